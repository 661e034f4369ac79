"""``labctl twin serve CONFIG``: serve every twin of a sim station behind its real protocol.

labctl never imports sims: the wire server is the module installed under the
``labctl.wire_servers`` entry point ``twins`` (``labctl.extensions``), so a labctl install
without sims still imports and this command then says what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from labctl import extensions
from labctl.cli.common import load_station_config
from labctl.cli.grammar import add_duration, duration_of
from labctl.interfaces.errors import ConfigError, LabctlError
from labctl.station.loader import load_config
from labctl.station.station import Station

SERVER = "twins"
"""The ``labctl.wire_servers`` entry point this command serves with."""
READY_LINE = "twin serve: ready (Ctrl-C or SIGTERM stops)"
HELP = """\
Build the simulated station of CONFIG (world + twins), connect every twin, and serve each
one on loopback behind its real device's protocol: laser = Santec TSL-570 (SCPI over TCP),
polarization controller = OZ Optics EPC-400 (ASCII on a pseudo-terminal), detector =
Single Quantum Eos (JSON over TCP + counts stream), time tagger = ID Quantique ID1000
(SCPI over ZMQ + tag stream), switch = Agiltron FF (4-byte frames on a pseudo-terminal).
Prints every endpoint, then serves until Ctrl-C or SIGTERM and stops cleanly (sockets and
pseudo-terminals closed, the symlinks it created removed). Ports and the symlink folder come
from the config's `twin_serve` section; the defaults are the ones configs/hil.yaml uses.
A twin is served as a second model (Keysight N7776C, Thorlabs MPC320, DiCon MEMS, Tektronix
AWG5208, ID Quantique ID120, PicoQuant HydraHarp 400) when `twin_serve.instruments.NAME.wire`
names it, or with `--for STATION` when the station that drives the twins names that model's
driver as the instrument's `class:`.
Exit codes: 0 stopped cleanly, 1 serving failed, 2 bad config.
"""


def register(subparsers: Any) -> None:
    """Add the ``twin`` command with its ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "twin",
        help="serve simulated twins behind real instrument protocols",
        description="Simulated twins on the wire.",
    )
    actions = parser.add_subparsers(dest="twin_action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve every twin of a sim station on loopback until Ctrl-C",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("config", metavar="CONFIG", help="station YAML file with a world")
    add_duration(serve, "serve this long, then stop as on Ctrl-C (default: until Ctrl-C)")
    serve.add_argument(
        "--for",
        dest="driven_by",
        metavar="STATION",
        help="serve each twin as the model whose driver STATION names for it (class:)",
    )
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Entry point of ``labctl twin serve``."""
    try:
        duration_s = duration_of(args)
        config = load_station_config(args, args.config)
        if config.world_spec() is None:
            raise ConfigError(
                "twin serve needs a simulated station (a `world:` section)", file=config.file
            )
        serve = extensions.load_module(extensions.WIRE_SERVERS, SERVER)
        settings = serve.ServeSettings.from_section(
            config.raw_section("twin_serve"), base_dir=config.config_dir
        )
        if args.driven_by is not None:
            driven = load_config(args.driven_by)
            classes = {name: spec.class_path for name, spec in driven.instruments.items()}
            models = serve.station_models(classes, file=driven.file)
            settings = settings.with_models(models, file=driven.file)
        station = Station.from_config(config)
        wire = serve.WireTwins(station.instruments, settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(station, wire, duration_s))
    except (LabctlError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(station: Station, wire: Any, duration_s: float | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        # A simulated world may compile its kernels on first use (seconds): do it before
        # the endpoints are announced, so no client's first call waits on a compiler.
        warm_up = getattr(station.world, "warm_up", None)
        if callable(warm_up):
            await asyncio.to_thread(warm_up)
        async with station:
            async with wire:
                for name, endpoints in wire.endpoints().items():
                    for role, address in endpoints.items():
                        print(f"{name} {role} {address}", flush=True)
                print(READY_LINE, flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    print("twin serve: stopped", flush=True)
