"""docs/asyncapi.yaml is valid AsyncAPI 3.0 in shape and describes every topic we publish."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from labctl.stream.topics import PUBLISHED_PATTERNS, Topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def load() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text())


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def address_regex(address: str) -> re.Pattern[str]:
    pattern = re.escape(address)
    pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", pattern)
    return re.compile(f"^{pattern}$")


def test_document_is_asyncapi_3_with_resolvable_refs() -> None:
    doc = load()
    assert doc["asyncapi"].startswith("3.0")
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        resolve(doc, ref)  # KeyError names a dangling reference
    for name, channel in doc["channels"].items():
        placeholders = set(re.findall(r"\{([a-z_]+)\}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), name
        assert channel["messages"], name


def test_every_published_pattern_is_a_channel() -> None:
    addresses = {c["address"] for c in load()["channels"].values()}
    missing = [p for p in PUBLISHED_PATTERNS if p not in addresses]
    assert not missing


def test_topics_the_code_builds_match_a_channel() -> None:
    regexes = [address_regex(c["address"]) for c in load()["channels"].values()]
    t = Topics("lab-1", "alice")
    built = [
        t.state,
        t.meta,
        t.run("r-20240101-keygen", "qkd"),
        t.tele("det-0", "count_rate_hz"),
        t.link("alice-bob", "skr"),
        t.cmd("pause"),
        t.cmd_reply("abort"),
    ]
    for topic in built:
        assert sum(bool(r.match(topic)) for r in regexes) == 1, topic
