"""What every run-engine command sets up around a run: engine options, a quiet terminal,
and the MQTT stream (publisher as a document sink, ``$state``/``$meta``, remote commands).

``labctl run``, ``labctl resume`` and ``labctl calibrate`` use it; this module adds no command
of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import labctl
from labctl.documents import Document
from labctl.interfaces.errors import ConfigError
from labctl.runner.control import RunControl
from labctl.runner.status import RunState
from labctl.store.keystore import node_store_path
from labctl.store.lock import StoreLock, hold_all

QUIET_LOGGERS = ("qcodes",)
"""Libraries whose INFO lines ("Created run with guid ...") are noise on a terminal."""

_STATE = {
    RunState.PREPARING: "init",
    RunState.RUNNING: "running",
    RunState.PAUSED: "suspended",
    RunState.SUSPENDED: "suspended",
}


def engine_options(config: Any) -> dict[str, Any]:
    """RunEngine keyword options from the config's ``runner`` section."""
    runner = dict(config.runner)
    options: dict[str, Any] = {}
    for key in (
        "watchdog_s",
        "call_timeout_s",
        "safe_state_timeout_s",
        "halt_grace_s",
        "instrument_give_up_s",
    ):
        if key in runner:
            value = runner[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(
                    f"must be a number > 0, got {value!r}", file=config.file, field=f"runner.{key}"
                )
            options[key] = float(value)
    return options


KEY_NODES = ("alice", "bob")
"""The key stores a main job writes: ``storage.key_store`` with ``-alice`` / ``-bob``."""


def store_locks(
    config: Any, *, keys: bool = True
) -> contextlib.AbstractContextManager[list[StoreLock]]:
    """Lock the calibration store and (``keys``) both key stores of ``config``'s storage.

    Taken before the station or the MQTT stream opens, so that a second main job on the
    same stores is refused (StoreLockedError naming the holder) before it touches an
    instrument or the node's ``$state``.
    """
    storage = config.storage
    stores: list[tuple[Path, str]] = [(Path(storage.calibration_store), "calibration store")]
    if keys:
        base = Path(storage.key_store)
        stores += [(node_store_path(base, node), f"key store ({node})") for node in KEY_NODES]
    return hold_all(stores)


class _QuietBelowWarning(logging.Filter):
    """Drops records under WARNING from the named loggers (and their children)."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep warnings and everything from other loggers."""
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes)


def quiet_console(prefixes: tuple[str, ...] = QUIET_LOGGERS) -> None:
    """Keep ``prefixes``' INFO chatter off the terminal handlers; log files still get it."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            continue
        if not any(isinstance(f, _QuietBelowWarning) for f in handler.filters):
            handler.addFilter(_QuietBelowWarning(prefixes))


@dataclass
class RunStream:
    """The run's side of the MQTT stream: a DocumentSink plus the ``$state`` listener.

    Documents go to the publisher's outbox (never waiting on the network); RunControl
    state changes become the retained ``$state``; the run's end is ``ready`` (or ``error``
    when the run failed, ``degraded`` when it ended degraded), read from the stop document.
    """

    publisher: Any
    broker_url: str = ""
    exit_status: str | None = None
    states: list[str] = field(default_factory=list)
    commands: Any = None
    """The session's command listener (None when ``mqtt.commands`` is not configured)."""

    def attach(self, control: RunControl) -> RunControl:
        """Publish ``control``'s states as ``$state`` and let remote commands drive it
        (a schedule attaches each run's control in turn); returns ``control``."""
        control.on_state(self.on_state)
        if self.commands is not None:
            _bind_commands(self.commands, control)
        return control

    def emit(self, document: Document) -> None:
        """DocumentSink: forward to the publisher; remember how the run ended."""
        if document.kind == "stop":
            self.exit_status = str(document.data.get("exit_status"))
        self.publisher.emit(document)

    async def aclose(self) -> None:
        """The publisher belongs to the stream session, which closes it."""

    def on_state(self, state: RunState) -> None:
        """RunControl listener: publish the node state."""
        if state is RunState.DONE:
            if self.exit_status in (None, "failed"):
                value = "error"
            elif self.exit_status == "degraded":
                value = "degraded"  # stays until the next run starts: an operator sees it
            else:
                value = "ready"
        elif state in _STATE:
            value = _STATE[state]
        else:
            return  # stopping: keep showing the last state until the stop document
        self.states.append(value)
        self.publisher.set_state(value)


def _bind_commands(listener: Any, control: RunControl) -> None:
    """Remote pause/resume/abort/recalibrate drive the same RunControl as Ctrl-C."""

    async def pause(args: Mapping[str, Any]) -> dict[str, Any]:
        control.pause()
        return {"paused": True}

    async def resume(args: Mapping[str, Any]) -> dict[str, Any]:
        control.resume()
        return {"resumed": True}

    async def abort(args: Mapping[str, Any]) -> dict[str, Any]:
        reason = args.get("reason") if isinstance(args.get("reason"), str) else None
        control.abort(f"abort command over MQTT{f': {reason}' if reason else ''}")
        return {"aborting": True}

    async def recalibrate(args: Mapping[str, Any]) -> dict[str, Any]:
        control.request("recalibrate")
        return {"requested": "recalibrate"}

    for action, callback in (
        ("pause", pause),
        ("resume", resume),
        ("abort", abort),
        ("recalibrate", recalibrate),
    ):
        listener.register(action, callback)


def node_meta(config: Any, station: Any, plan: str) -> dict[str, Any]:
    """The retained ``$meta``: versions, instruments, simulated or real, the plan."""
    return {
        "labctl": labctl.__version__,
        "lab": config.lab,
        "node": config.node,
        "simulated": getattr(station, "world", None) is not None,
        "instruments": {
            name: type(inst).__module__ + ":" + type(inst).__name__
            for name, inst in station.instruments.items()
        },
        "plan": plan,
    }


@contextlib.asynccontextmanager
async def run_stream(
    config: Any,
    station: Any,
    control: RunControl,
    plan: str,
    runs_dir: Path | None = None,
    *,
    owns_state: bool = True,
    outbox_name: str | None = None,
) -> AsyncIterator[RunStream]:
    """The MQTT stream of one run (an embedded loopback broker when ``mqtt`` has no url).

    ``runs_dir`` (default ``storage.runs_dir``) places the outbox; ``labctl resume`` passes
    the resumed run's parent folder so that it replays what the crashed process left there.
    ``owns_state``: whether this process publishes the node's ``$state``/``$meta`` and
    last will (see :mod:`labctl.stream.publisher`); a second process of the same lab/node
    passes False, and an ``outbox_name`` of its own (default ``{lab}-{node}``) so that the
    two never share an outbox folder.
    """
    from labctl.stream.session import open_stream
    from labctl.stream.telemetry import periodic_telemetry

    section = config.raw_section("mqtt")
    runs = Path(config.storage.runs_dir) if runs_dir is None else Path(runs_dir)
    # Node state beside the runs folder (not in it: that folder holds one entry per run).
    outbox = runs.parent / ".mqtt-outbox" / (outbox_name or f"{config.lab}-{config.node}")
    async with open_stream(
        section,
        lab=config.lab,
        node=config.node,
        outbox_dir=outbox,
        config_dir=config.config_dir,
        owns_state=owns_state,
    ) as session:
        stream = RunStream(session.publisher, session.broker_url, commands=session.commands)
        session.publisher.set_meta(node_meta(config, station, plan))
        session.publisher.set_state("ready")
        stream.attach(control)
        logging.getLogger(__name__).info("streaming on %s", session.broker_url)
        interval_s = session.settings.telemetry_interval_s
        async with periodic_telemetry(station.instruments, session.publisher, interval_s):
            yield stream
