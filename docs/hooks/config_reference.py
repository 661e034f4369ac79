"""MkDocs hook: the station-file reference, generated from the code at every build.

``labctl schema`` (labctl.cli.schema.station_schema) gives the validated top level; the
sections that plans validate themselves (``calibration``, ``sync``, ``qkd``) and the
``kme`` section come from their settings classes. Nothing on the generated page is written
by hand, so it cannot drift.

* ``reference/config.md`` is added to the site as a generated page;
* ``{{ calibration_limits }}`` in any page becomes the calibration defaults table.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

PAGE = "reference/config.md"
CALIBRATION_MARKER = "{{ calibration_limits }}"

INTRO = """# Station file reference

A station file is YAML; `labctl check FILE` validates it and `labctl schema` prints the JSON
schema used here (point an editor's YAML language server at it for completion). This page is
generated from that schema and from the settings classes of the plans at every docs build.
Unknown keys are errors everywhere, named with their file, line and dotted path.
"""


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference page."""
    files.append(File.generated(config, PAGE, content=reference_page()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Expand the calibration limits marker."""
    if CALIBRATION_MARKER in markdown:
        markdown = markdown.replace(CALIBRATION_MARKER, calibration_tables())
    return markdown


def reference_page() -> str:
    """The whole generated page."""
    from labctl.cli.schema import station_schema

    schema = station_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    parts = [INTRO, "## Top level\n", object_table(schema, defs)]
    for name in sorted(defs):
        parts.append(f"## `{name}`\n")
        description = defs[name].get("description")
        if description:
            parts.append(_prose(description) + "\n")
        parts.append(object_table(defs[name], defs))
    open_sections = [
        key
        for key, prop in schema.get("properties", {}).items()
        if prop.get("type") == "object" and "patternProperties" not in prop
    ]
    parts.append(free_sections(open_sections))
    return "\n".join(parts)


def object_table(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """One row per property: name, type, default, required, description."""
    required = set(schema.get("required", ()))
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in schema.get("properties", {}).items():
        default = "required" if key in required else _default(prop)
        description = _cell(prop.get("description", "") or _referenced(prop, defs))
        rows.append(f"| `{key}` | {type_of(prop, defs)} | {default} | {description} |")
    return "\n".join(rows) + "\n"


def _referenced(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """The first line of the description of the definition a property refers to."""
    refs = [prop, *prop.get("anyOf", ())]
    for ref in (r["$ref"] for r in refs if "$ref" in r):
        text = str(defs.get(str(ref).rsplit("/", 1)[-1], {}).get("description", ""))
        if text:
            return text.splitlines()[0]
    return ""


def type_of(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """A short, linked type name for a property's schema."""
    if "$ref" in prop:
        name = str(prop["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        return " or ".join(type_of(p, defs) for p in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {type_of(prop.get('items', {}), defs)}"
    if kind == "object":
        patterns = prop.get("patternProperties")
        if patterns:
            inner = next(iter(patterns.values()))
            return f"mapping of name to {type_of(inner, defs)}"
        return "mapping"
    limits = [
        f"{word} {prop[key]}"
        for key, word in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in prop
    ]
    fmt = f" ({prop['format']})" if "format" in prop else ""
    return str(kind) + fmt + (f" ({', '.join(limits)})" if limits else "")


def free_sections(open_sections: list[str]) -> str:
    """The sections the schema leaves open, from the settings classes that validate them."""
    from experiments.sync.settings import SyncSettings
    from labctl.kme.config import KmeConfig
    from labctl.link.settings import KeygenSettings

    parts = [
        "## Sections validated by the plans\n",
        ", ".join(f"`{k}`" for k in open_sections)
        + " are open mappings in the schema; the code that uses them validates every key "
        "when it reads them (a run's start, `labctl calibrate`, `labctl twin serve`). "
        "The tables below list the keys and defaults of those with a settings class.\n",
        "### `runner`\n",
        "| key | type | default | description |\n|---|---|---|---|\n"
        "| `plan` | string | none | `module:function` run by `labctl run` without `--plan` |\n"
        "| `watchdog_s` | number > 0 | none | fail a plan that shows no activity (documents, "
        "progress, checkpoints) for this long |\n"
        "| `call_timeout_s` | number > 0 | 10 | timeout of one supervised instrument call |\n"
        "| `safe_state_timeout_s` | number > 0 | 10 | timeout of each `safe_state()` |\n"
        "| `halt_grace_s` | number > 0 | 10 | after `--duration`, wait this long for a "
        "checkpoint before halting |\n",
        "### `calibration`\n",
        calibration_tables(),
        "### `sync`\n",
        dataclass_table(SyncSettings),
        "### `qkd`\n",
        dataclass_table(KeygenSettings),
        "### `kme`\n",
        "Read by `labctl kme serve` (labctl.kme.config); see [Key delivery](../kme.md).\n",
        model_tables("kme", KmeConfig),
    ]
    return "\n".join(parts)


def model_tables(section: str, model: type[Any]) -> str:
    """A pydantic section model: its own keys, then one table per nested model."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    parts = [object_table(schema, defs)]
    for name, sub in defs.items():
        description = _prose(str(sub.get("description", ""))).splitlines()
        intro = f"{description[0]} (in `{section}`)\n\n" if description else ""
        parts.append(f"#### {name}\n\n{intro}" + object_table(sub, defs))
    return "\n".join(parts)


def calibration_tables() -> str:
    """Every calibration routine's settings with their defaults (one table per routine)."""
    from experiments.calibration.settings import DEFAULTS

    parts = []
    for routine, values in DEFAULTS.items():
        rows = ["| key | default |", "|---|---|"]
        rows += [f"| `{routine}.{k}` | {_value(v)} |" for k, v in values.items()]
        parts.append(f"**`calibration.{routine}`**\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def dataclass_table(cls: type[Any]) -> str:
    """Fields of a settings dataclass with their defaults."""
    rows = ["| key | default |", "|---|---|"]
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        rows.append(f"| `{field.name}` | {_value(default)} |")
    return "\n".join(rows) + "\n"


def _default(prop: Mapping[str, Any]) -> str:
    return _value(prop["default"]) if "default" in prop else ""


def _value(value: Any) -> str:
    if value is None:
        return "none"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    # Docstrings use reST double backticks; Markdown wants single ones.
    return text.replace("``", "`")
