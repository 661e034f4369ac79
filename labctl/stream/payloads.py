"""JSON payloads of the topic tree: compact, UTF-8, units in field names.

Run documents are published exactly as ``Document.to_json_dict()`` (``seq``, ``ts``,
``run_id``...), telemetry as ``{"ts": ..., "<quantity>": value}`` and link metrics as
``{"ts": ..., "link_id": ..., <fields of the metric>}``. Link metric names follow the QKD
link performance parameters of ETSI GS QKD 015 (secret key rate, QBER...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from labctl.interfaces.errors import ConfigError
from labctl.runner.documents import Document

# metric -> the fields its payload may carry (units in names; QBER is a fraction 0..1).
LINK_METRICS: dict[str, frozenset[str]] = {
    "skr": frozenset({"skr_bps"}),
    "sifted": frozenset({"sifted_rate_bps"}),
    "qber": frozenset({"qber", "qber_z", "qber_x"}),
    "status": frozenset({"status"}),
    "attenuation": frozenset({"attenuation_db"}),
    "key_stored": frozenset({"key_stored_bits"}),
}

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
    return dumps({"ts": ts, "link_id": link_id, **values})


def meta_payload(meta: Mapping[str, Any]) -> bytes:
    """Payload of the retained ``$meta`` topic."""
    return dumps(dict(meta))
