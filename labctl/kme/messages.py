"""Parsing of ETSI GS QKD 014 requests: Key request (enc_keys) and Key IDs (dec_keys).

Both come as a JSON body (POST) or as query parameters (GET: ``number``, ``size`` for
enc_keys; ``key_ID`` for dec_keys). Anything off the spec's format is a 400 naming the field;
sizes are in bits and must be whole bytes (the KME hands out bytes, base64 encoded).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.kme.errors import KmeError, bad_request

_KEY_REQUEST_FIELDS = frozenset(
    {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional"}
)
_KEY_IDS_FIELDS = frozenset({"key_IDs", "key_IDs_extension"})
_KEY_ID_FIELDS = frozenset({"key_ID", "key_ID_extension"})


@dataclass(frozen=True)
class Limits:
    """What this KME offers (the Status object's limits)."""

    key_size_bits: int
    min_key_size_bits: int
    max_key_size_bits: int
    max_key_per_request: int
    max_sae_id_count: int = 0


@dataclass(frozen=True)
class KeyRequest:
    """A validated Key request: how many keys, of how many bits, for which extra slaves."""

    number: int
    size_bits: int
    additional_slaves: tuple[str, ...] = ()


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of a request body (400 when it is not UTF-8 JSON)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise bad_request("request body is JSON nested too deeply") from None


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(
            f"{field} must be an integer, got {type(value).__name__}", **{field: value}
        )
    return value


def _query_integer(text: str, field: str) -> int:
    if not text.isdigit():
        raise bad_request(f"{field} must be a decimal integer, got {text!r}", **{field: text})
    return int(text)


def _check_key_request(
    number: int, size: int, slaves: tuple[str, ...], limits: Limits
) -> KeyRequest:
    if number < 1:
        raise bad_request(f"number must be at least 1, got {number}", number=number)
    if number > limits.max_key_per_request:
        raise bad_request(
            f"number {number} exceeds max_key_per_request {limits.max_key_per_request}",
            number=number,
        )
    if size % 8:
        raise bad_request(f"size must be a multiple of 8 bits, got {size}", size=size)
    if not limits.min_key_size_bits <= size <= limits.max_key_size_bits:
        raise bad_request(
            f"size {size} is outside min_key_size {limits.min_key_size_bits} .. "
            f"max_key_size {limits.max_key_size_bits}",
            size=size,
        )
    if len(slaves) > limits.max_sae_id_count:
        raise bad_request(
            f"additional_slave_SAE_IDs: this KME delivers to one slave SAE per key "
            f"(max_SAE_ID_count {limits.max_sae_id_count}), got {len(slaves)}",
            additional_slave_SAE_IDs=list(slaves),
        )
    return KeyRequest(number, size, slaves)


def _extensions(body: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad_request(f"{field} must be an array of objects")
    return value


def key_request_from_body(body: Any, limits: Limits) -> KeyRequest:
    """A Key request object (POST enc_keys)."""
    if not isinstance(body, dict):
        raise bad_request(f"Key request must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _KEY_REQUEST_FIELDS)
    if unknown:
        raise bad_request(f"unknown field(s) in Key request: {', '.join(unknown)}")
    number = _integer(body.get("number", 1), "number")
    size = _integer(body.get("size", limits.key_size_bits), "size")
    slaves = body.get("additional_slave_SAE_IDs", [])
    if not isinstance(slaves, list) or not all(isinstance(s, str) for s in slaves):
        raise bad_request("additional_slave_SAE_IDs must be an array of strings")
    mandatory = _extensions(body, "extension_mandatory")
    _extensions(body, "extension_optional")  # optional extensions may be ignored
    if mandatory:
        # No extension is supported: the spec has the request fail with the ones we lack.
        raise KmeError(
            400,
            "not all extension_mandatory parameters are supported",
            [{"extension_mandatory_unsupported": item} for item in mandatory],
        )
    return _check_key_request(number, size, tuple(slaves), limits)


def key_request_from_query(query: Mapping[str, str], limits: Limits) -> KeyRequest:
    """Query parameters ``number`` and ``size`` (GET enc_keys)."""
    unknown = sorted(set(query) - {"number", "size"})
    if unknown:
        raise bad_request(f"unknown query parameter(s) for enc_keys: {', '.join(unknown)}")
    number = _query_integer(query["number"], "number") if "number" in query else 1
    size = _query_integer(query["size"], "size") if "size" in query else limits.key_size_bits
    return _check_key_request(number, size, (), limits)


def _key_id(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{where} must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise bad_request(f"{where} is not a UUID: {value!r}", key_ID=value) from None


def key_ids_from_body(body: Any, limits: Limits) -> list[str]:
    """A Key IDs object (POST dec_keys): the key_IDs asked for, in order, without repeats."""
    if not isinstance(body, dict):
        raise bad_request(f"Key IDs must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _KEY_IDS_FIELDS)
    if unknown:
        raise bad_request(f"unknown field(s) in Key IDs: {', '.join(unknown)}")
    items = body.get("key_IDs")
    if not isinstance(items, list) or not items:
        raise bad_request("key_IDs must be a non-empty array of {key_ID: uuid} objects")
    ids = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - _KEY_ID_FIELDS:
            raise bad_request(f"key_IDs[{i}] must be an object with key_ID")
        ids.append(_key_id(item.get("key_ID"), f"key_IDs[{i}].key_ID"))
    return _check_ids(ids, limits)


def key_ids_from_query(query: Mapping[str, str], limits: Limits) -> list[str]:
    """Query parameter ``key_ID`` (GET dec_keys)."""
    unknown = sorted(set(query) - {"key_ID"})
    if unknown or "key_ID" not in query:
        raise bad_request("dec_keys takes one query parameter, key_ID")
    return _check_ids([_key_id(query["key_ID"], "key_ID")], limits)


def _check_ids(ids: list[str], limits: Limits) -> list[str]:
    if len(ids) > limits.max_key_per_request:
        raise bad_request(
            f"{len(ids)} key_IDs exceed max_key_per_request {limits.max_key_per_request}"
        )
    if len(set(ids)) != len(ids):
        raise bad_request("a key_ID appears twice in the request")
    return ids
