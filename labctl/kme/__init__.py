"""Key delivery to applications: a Key Management Entity (KME) per node speaking ETSI GS QKD 014.

Modules, one concept each:

- :mod:`~labctl.kme.config`   the ``kme:`` section of the station file, validated
- :mod:`~labctl.kme.errors`   the spec's Error object and status codes (400, 401, 503)
- :mod:`~labctl.kme.messages` parsing of Key request / Key IDs bodies and query strings
- :mod:`~labctl.kme.pool`     key material sliced from the node's key store, in store order
- :mod:`~labctl.kme.ledger`   durable bookkeeping: allocation cursor and open reservations
- :mod:`~labctl.kme.commit`   group commit: one fsync shared by concurrent deliveries
- :mod:`~labctl.kme.engine`   the KME's rules (who may ask what), independent of HTTP
- :mod:`~labctl.kme.peer`     the KME-to-KME reservation channel (mutual TLS)
- :mod:`~labctl.kme.tls`      server/client SSL contexts and the peer certificate's CN
- :mod:`~labctl.kme.certs`    a test CA with KME and SAE certificates
- :mod:`~labctl.kme.server`   the aiohttp application: routes, authentication, JSON
- :mod:`~labctl.kme.service`  one node's KME assembled and serving (``labctl kme serve``)

docs/kme.md has the API, the ``kme:`` section, a demo and why no key is served twice.
"""
