"""JSON payloads of the topic tree: compact, UTF-8, units in field names.

Run documents are published exactly as ``Document.to_json_dict()`` (``seq``, ``ts``,
``run_id``...), telemetry as ``{"ts": ..., "<quantity>": value}`` and link metrics as
``{"ts": ..., "link_id": ..., <fields of the metric>}``. Link metric names follow the key
association link (``qkd_link``) of the ETSI GS QKD 015 node model, with labctl's unit
suffixes added:

=============  ==========================================  =================================
metric         fields                                      GS QKD 015 leaf
=============  ==========================================  =================================
status         status: ACTIVE | PASSIVE | PENDING | OFF    qkdl_status (link-status types)
skr            skr_bps, eskr_bps, expected_consumption_bps qkdl_performance skr, eskr,
                                                           expected_consumption (bit/s)
qber           qber, qber_z, qber_x (fractions 0..1)       phys_perf, type QBER
attenuation    channel_att_db                              phys_channel_att
sifted         sifted_rate_bps                             (labctl: sifted key rate)
key_stored     key_stored_bits                             (labctl: key stored per block)
key_pool       stored_key_count, max_key_count,            (GS QKD 014 Status names: the
               key_size_bits                               KME's pool of the link)
relay          relayed_keys_count, relayed_bits,           (labctl: trusted-node relay,
               origin_keys_count, hop_keys_count,          cumulative since the KME started;
               end_keys_count                              internal consumption in 015)
=============  ==========================================  =================================

docs/asyncapi.yaml documents each one field for field (a test compares it with what is
published).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from labctl.documents import Document
from labctl.interfaces.errors import ConfigError

# metric -> the fields its payload may carry (units in names; QBER is a fraction 0..1).
LINK_METRICS: dict[str, frozenset[str]] = {
    "status": frozenset({"status"}),
    "skr": frozenset({"skr_bps", "eskr_bps", "expected_consumption_bps"}),
    "qber": frozenset({"qber", "qber_z", "qber_x"}),
    "attenuation": frozenset({"channel_att_db"}),
    "sifted": frozenset({"sifted_rate_bps"}),
    "key_stored": frozenset({"key_stored_bits"}),
    "key_pool": frozenset({"stored_key_count", "max_key_count", "key_size_bits"}),
    "relay": frozenset(
        {
            "relayed_keys_count",
            "relayed_bits",
            "origin_keys_count",
            "hop_keys_count",
            "end_keys_count",
        }
    ),
}
# GS QKD 015 link-status types: key being generated, link up without key, being set up, off.
LINK_STATUSES = ("ACTIVE", "PASSIVE", "PENDING", "OFF")

_UNIT_SUFFIXES = (
    "_s", "_ms", "_us", "_ns", "_ps", "_hz", "_nm", "_mw", "_dbm", "_mv", "_db", "_v",
    "_bps", "_bits", "_c", "_k", "_deg", "_rad", "_count", "_counts", "_fraction", "_ppm",
)  # fmt: skip


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; NaN/inf are refused because JSON has no spelling for them."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def document_payload(document: Document) -> bytes:
    """Payload of ``run/{run_id}/{stream}``."""
    try:
        return dumps(document.to_json_dict())
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"run {document.run_id} seq {document.seq}: document data is not JSON-able: {exc}"
        ) from None


def has_unit(name: str) -> bool:
    """True when a quantity name ends with a recognised unit suffix (or is a count)."""
    return name.endswith(_UNIT_SUFFIXES) or name in {"counts", "state", "status"}


def telemetry_payload(quantity: str, value: float | int | str | bool, ts: float) -> bytes:
    """Payload of ``tele/{instrument}/{quantity}``; the quantity name carries the unit."""
    if not has_unit(quantity):
        raise ConfigError(
            f"telemetry quantity {quantity!r} has no unit suffix (e.g. power_mw, rate_hz)",
            field="quantity",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"telemetry {quantity}: value {value} is not finite")
    return dumps({"ts": ts, quantity: value})


def link_payload(link_id: str, metric: str, values: Mapping[str, Any], ts: float) -> bytes:
    """Payload of ``link/{link_id}/{metric}``; fields are checked against LINK_METRICS."""
    allowed = LINK_METRICS.get(metric)
    if allowed is None:
        raise ConfigError(
            f"unknown link metric {metric!r}; known: {', '.join(sorted(LINK_METRICS))}",
            field="metric",
        )
    unknown = set(values) - allowed
    if unknown or not values:
        raise ConfigError(
            f"link metric {metric!r} takes fields {sorted(allowed)}, got {sorted(values)}",
            field="values",
        )
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"link metric {metric}.{key}: value {value} is not finite")
        if key == "status" and value not in LINK_STATUSES:
            raise ConfigError(
                f"link status {value!r} is not one of {', '.join(LINK_STATUSES)}",
                field="values.status",
            )
        if key != "status" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(
                f"link metric {metric}.{key} must be a number, got {type(value).__name__}",
                field=f"values.{key}",
            )
    return dumps({"ts": ts, "link_id": link_id, **values})


def meta_payload(meta: Mapping[str, Any]) -> bytes:
    """Payload of the retained ``$meta`` topic."""
    return dumps(dict(meta))
