"""The two-node key-generation protocol: Alice's and Bob's nodes over authenticated channels.

Per block, Bob announces his detections, Alice answers with bases and intensity classes,
both estimate, reconcile (Cascade), verify and amplify, and store the same key under the
same id (``nodes``, ``alice``, ``node_base``); blocks run through a bounded pipeline in
parallel and are committed in order (``pipeline``, ``workers``), on in-process or TCP
channels (``tcp_links``) under the settings of the station file's ``qkd:`` section
(``settings``). The plans that acquire blocks and decide when to run this live in
``experiments.keygen``.
"""
