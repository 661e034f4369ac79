"""The instrument kit a driver is built from: base class, settings memory, checks, recovery.

``base``: ``DriverBase`` (open, identify, reconnect and re-apply remembered settings, one
operation at a time with recovery), ``SettingsMemory``, and the station-entry helpers
(``require_transport``, ``make_transport``, ``validate_config_settings``). ``validate``:
argument checks that name the instrument, the setting and the range, before anything goes
on the wire (the simulated twins check their settings with the same functions).
``recovery``: the ``@operation`` decorator. ``scpi``: a line-based query link. See
docs/guides/writing-a-driver.md.
"""
