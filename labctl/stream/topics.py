"""The MQTT topic tree ``labctl/v1/{lab}/{node}/...`` and the validation of its levels.

Identifiers (lab, node, instrument, link) are ``[a-z0-9-]`` so that every topic is
safe in any MQTT client, dashboard or URL; run ids may also hold capitals, because they keep
the run name as the operator typed it. Stream, quantity and metric names are field-like
(``[a-z0-9_]``) because they carry units (``power_mw``, ``count_rate_hz``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.interfaces.errors import ConfigError

ROOT = "labctl/v1"
_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

STATES = ("init", "ready", "running", "suspended", "error", "degraded", "lost")
"""Values of ``$state``; ``lost`` is only ever sent by the broker as the last will."""

COMMAND_ACTIONS = ("pause", "resume", "abort", "recalibrate")

# Every topic pattern the code publishes (or listens to), as AsyncAPI channel addresses.
PUBLISHED_PATTERNS = (
    "labctl/v1/{lab}/{node}/$state",
    "labctl/v1/{lab}/{node}/$meta",
    "labctl/v1/{lab}/{node}/run/{run_id}/{stream}",
    "labctl/v1/{lab}/{node}/tele/{instrument}/{quantity}",
    "labctl/v1/{lab}/{node}/link/{link_id}/{metric}",
    "labctl/v1/{lab}/{node}/cmd/{action}",
    "labctl/v1/{lab}/{node}/cmd/{action}/reply",
)


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid topic identifier, else raise ConfigError naming it."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid MQTT topic id: use 1-64 of [a-z0-9-], "
            "not starting or ending with '-'",
            field=what,
        )
    return value


def check_run_id(value: str) -> str:
    """Return ``value`` if it is a valid run id (``[A-Za-z0-9-]``), else raise ConfigError."""
    if not isinstance(value, str) or not _RUN_ID_RE.match(value):
        raise ConfigError(
            f"run_id {value!r} is not a valid MQTT topic id: use 1-64 of [A-Za-z0-9-], "
            "not starting or ending with '-'",
            field="run_id",
        )
    return value


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid stream/quantity/metric name, else raise ConfigError."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid name: use a letter then [a-z0-9_], at most 63",
            field=what,
        )
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds the topics of one node; every level is validated once, here."""

    lab: str
    node: str

    def __post_init__(self) -> None:
        check_id(self.lab, "lab")
        check_id(self.node, "node")

    @property
    def base(self) -> str:
        """``labctl/v1/{lab}/{node}``."""
        return f"{ROOT}/{self.lab}/{self.node}"

    @property
    def state(self) -> str:
        """Retained node state topic."""
        return f"{self.base}/$state"

    @property
    def meta(self) -> str:
        """Retained node metadata topic."""
        return f"{self.base}/$meta"

    @property
    def everything(self) -> str:
        """Subscription filter for the whole node subtree."""
        return f"{self.base}/#"

    def run(self, run_id: str, stream: str) -> str:
        """Topic of one run document stream."""
        return f"{self.base}/run/{check_run_id(run_id)}/{check_name(stream, 'stream')}"

    def tele(self, instrument: str, quantity: str) -> str:
        """Topic of one telemetry quantity of one instrument."""
        inst = check_id(instrument, "instrument")
        return f"{self.base}/tele/{inst}/{check_name(quantity, 'quantity')}"

    def link(self, link_id: str, metric: str) -> str:
        """Topic of one QKD link metric."""
        return f"{self.base}/link/{check_id(link_id, 'link_id')}/{check_name(metric, 'metric')}"

    def cmd(self, action: str) -> str:
        """Topic a remote operator publishes a command on."""
        return f"{self.base}/cmd/{check_name(action, 'action')}"

    @property
    def cmd_filter(self) -> str:
        """Subscription filter for every command (not their replies)."""
        return f"{self.base}/cmd/+"

    def cmd_reply(self, action: str) -> str:
        """Topic the node answers a command on."""
        return f"{self.cmd(action)}/reply"

    def parse(self, topic: str) -> tuple[str, ...]:
        """Split a topic of this node into its levels after the base; raise if foreign."""
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            raise ValueError(f"topic {topic!r} is not under {self.base}")
        return tuple(topic[len(prefix) :].split("/"))
