"""The station file's ``sync:`` section, validated (defaults suit the simulated station)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from experiments.sync.alice import DETECTOR_STATES
from labctl.interfaces.errors import ConfigError


def _default_channels() -> dict[int, str]:
    return {0: "Z0", 1: "Z1", 2: "X0", 3: "X1"}


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """How to acquire synchronization (see configs/sim.yaml ``sync:``)."""

    tagger: str = "tagger-bob"
    max_ppm: float = 20.0
    offset_prior_s: float = 1.0
    min_tags: int = 2000
    min_span_s: float = 0.02
    max_acquire_s: float = 2.0
    marker_gaps: int = 16
    min_gap_s: float = 2e-5
    marker_seed: int | None = None
    """Seed of the public marker frame's states (None: a fresh one per synchronization)."""
    batch_timeout_s: float = 5.0
    channels: dict[int, str] = field(default_factory=_default_channels)

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any] | None, file: str | None = None
    ) -> SyncSettings:
        """Validate a ``sync:`` mapping; ConfigError names the bad field."""
        data = dict(section or {})
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            where = f"sync.{key}"
            if key not in known:
                raise ConfigError(
                    f"unknown key (known: {', '.join(sorted(known))})", file=file, field=where
                )
            if key == "tagger":
                if not isinstance(value, str) or not value:
                    raise ConfigError(
                        f"must be an instrument name, got {value!r}", file=file, field=where
                    )
            elif key == "channels":
                values[key] = _channels(value, file)
                continue
            elif key == "marker_seed":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(
                        f"must be an integer >= 0, got {value!r}", file=file, field=where
                    )
            elif key in ("min_tags", "marker_gaps"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(
                        f"must be an integer >= 1, got {value!r}", file=file, field=where
                    )
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ConfigError(
                        f"must be a number > 0, got {value!r}", file=file, field=where
                    )
                value = float(value)
            values[key] = value
        return cls(**values)


def _channels(value: Any, file: str | None) -> dict[int, str]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            f"must map tagger channels to detectors, e.g. {{0: Z0, 1: Z1}}, got {value!r}",
            file=file,
            field="sync.channels",
        )
    out: dict[int, str] = {}
    for channel, detector in value.items():
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < 256:
            raise ConfigError(
                f"channel {channel!r} is not 0..255", file=file, field="sync.channels"
            )
        if detector not in DETECTOR_STATES:
            raise ConfigError(
                f"channel {channel}: detector {detector!r} is not one of Z0, Z1, X0, X1",
                file=file,
                field="sync.channels",
            )
        out[channel] = str(detector)
    return out
