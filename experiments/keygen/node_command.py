"""``labctl node alice|bob CONFIG``: Alice and Bob as two processes over authenticated TCP.

``labctl node alice CONFIG --listen HOST:PORT --psk-file F`` serves blocks (port 0 picks a
free port; the chosen address is printed as ``listening on HOST:PORT``).
``labctl node bob CONFIG --connect HOST:PORT --psk-file F --duration 30s`` runs the key
generation plan (calibrate, synchronize, acquire, post-process) against the remote Alice;
``--skip-calibration`` leaves out the calibration step (station already calibrated).
Both write their own key store (``storage.key_store`` with ``-alice``/``-bob``); the keys
match bit for bit under the same ids and Alice files them under Bob's run id. The
pre-shared key file (raw, or hex text) authenticates every message and is never printed.
Under ``qkd.auth: wegman-carter`` (the default) it holds at least 640 random bytes: the
first 32 key the per-message HMAC, the rest seeds each node's Wegman-Carter pool beside its
key store on first use (``labctl.qkd.auth.transcript``); ``qkd.auth: hmac`` needs 16.

``--workers W`` (both nodes, the same W): W blocks in post-processing at once, each on its
own TCP channel under a key derived from the pre-shared key (``labctl.link.tcp_links``),
keys committed in block order so both stores stay identical. Every channel, W = 1 included,
opens with Alice's challenge and Bob's authenticated hello, so different W at the two ends
is refused at connect time with an error naming ``--workers``. Alice's listener closes any
connection that does not authenticate (garbage, silence, a wrong pre-shared key, a port
scan), says so on stderr and keeps waiting for Bob until ``--timeout`` (default 60s).

The grammar is ``labctl run``'s: the station file is the positional CONFIG, ``--duration``
and ``--timeout`` read ``90s``, ``2m`` or ``1h30m`` (``labctl.cli.grammar``) and ``--set
KEY=VALUE`` changes the station file's sections (``qkd.block_pulses=1e7``) with the same
validation and suggestions.

Ctrl-C/SIGTERM on Alice: she takes no new block, finishes the ones in flight (each message
within ``qkd.channel_timeout_s``) and closes her channels; Bob's next block fails, blocks
after it are dropped at both ends, his run ends "aborted" and both stores hold the same keys
(``labctl.link.workers``). A second signal stops Alice at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from labctl.cli.grammar import add_duration, add_timeout, duration_of, parse_duration_s
from labctl.cli.runsetup import quiet_console
from labctl.interfaces import Laser
from labctl.interfaces.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = "60s"
DEFAULT_DURATION = "30s"


def parse_address(text: str, where: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port) (ConfigError naming the option when malformed)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"expected HOST:PORT, got {text!r}", field=where)
    return host, int(port)


def read_psk(path: str) -> bytes:
    """The pre-shared key from a private file (0600): hex text or raw bytes, >= 16 bytes.

    A file its group or others may read is refused, naming the fix (``chmod 600 FILE``).
    """
    from labctl.store.secret_files import read_secret_file

    data = read_secret_file(path, field="--psk-file")
    text = data.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = data
    if len(key) < 16:
        raise ConfigError(
            f"pre-shared key has {len(key)} bytes, need at least 16", file=path, field="--psk-file"
        )
    return key


def link_auth(
    settings: Any,
    psk: bytes,
    store_path: Path,
    role: Literal["alice", "bob"],
    psk_file: str,
    store_key: bytes | None,
) -> tuple[bytes, Any]:
    """(per-message HMAC key, Wegman-Carter pool or None) under ``qkd.auth``.

    Wegman-Carter: the pre-shared key's first 32 bytes key the HMAC layer, the rest seeds
    the pool beside the key store on first use (``labctl.qkd.auth.transcript``). The key
    store records which key seeded its pool: a pool file deleted while its pre-shared key is
    kept is refused (seeding it again would reuse pads).
    """
    from labctl.qkd.auth.transcript import (
        AuthPool,
        PoolStateError,
        pool_path,
        psk_parts,
        seed_id_of,
    )
    from labctl.store.keystore import KeyStore

    if settings.auth == "hmac":
        return psk, None
    try:
        hmac_key, _ = psk_parts(psk)
    except ValueError as exc:
        raise ConfigError(
            f"{exc} (or set qkd.auth: hmac)", file=psk_file, field="--psk-file"
        ) from None
    path = pool_path(store_path)
    seed_id = seed_id_of(psk).encode()
    if not path.exists():
        with KeyStore(store_path, encryption_key=store_key) as store:
            if store.note("auth_pool_seed") == seed_id:
                raise PoolStateError(
                    f"authentication pool {path} is gone but its pre-shared key seeded it "
                    "before: seeding again would reuse pads; use a new pre-shared key"
                )
            store.set_note("auth_pool_seed", seed_id)
    return hmac_key, AuthPool.open(path, role, psk, store_key)


def _warn_idle_workers(settings: Any, workers: int, who: str) -> None:
    """Workers take blocks in turn: one waits ~W block intervals for its next block."""
    idle_s = workers * settings.block_interval_s
    if workers > 1 and idle_s >= settings.channel_timeout_s:
        log.warning(
            "%s: with --workers %d a channel may wait %g s between blocks (W x "
            "qkd.block_interval_s), not under qkd.channel_timeout_s = %g s: raise the timeout "
            "or use fewer workers",
            who,
            workers,
            idle_s,
            settings.channel_timeout_s,
        )


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, serving: list[bool]) -> Any:
    """First SIGINT/SIGTERM while serving: set ``stop``; before serving or a second: cancel.

    Yields the list of signals received (names), for the final report.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        if serving[0] and len(received) == 1:
            log.warning(
                "alice: %s received: no new blocks, finishing those in flight "
                "(again to stop at once)",
                sig.name,
            )
            stop.set()
        elif task is not None:
            task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _first_qkd_error(exc: BaseException) -> BaseException | None:
    """The QkdError behind ``exc`` (serve_alice's task group wraps its first failure)."""
    from labctl.qkd.errors import QkdError

    if isinstance(exc, QkdError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_qkd_error(inner)
            if found is not None:
                return found
    return None


def _print_rejected(peer: str, reason: str) -> None:
    """Alice's listener closed a connection that did not authenticate; she waits on."""
    log.warning("alice: refused connection from %s: %s", peer, reason)


async def _alice(args: argparse.Namespace, config: Any, psk: bytes) -> int:
    from labctl.cli.runsetup import store_locks

    stop = asyncio.Event()
    serving = [False]
    # Her key store is hers alone: a second Alice, or a main job, on it is refused by name.
    with (
        store_locks(config, nodes=("alice",), calibration=False),
        _stop_on_signals(stop, serving) as received,
    ):
        try:
            code = await _serve_alice(args, config, psk, stop, serving)
        except asyncio.CancelledError:
            if not received:
                raise
            log.warning("alice: stopped at once (%s received)", received[-1])
            return 1
    if received:
        log.warning("alice: stopped (%s received)", received[0])
        return max(code, 1)
    return code


async def _serve_alice(
    args: argparse.Namespace, config: Any, psk: bytes, stop: asyncio.Event, serving: list[bool]
) -> int:
    # The plan's modules load with the command, not with every ``labctl`` start.
    from experiments.keygen import control as control_mod
    from experiments.keygen import plan as keygen
    from experiments.keygen.source import TransmitterSource
    from experiments.sync import alice as alice_mod
    from labctl.link import nodes, tcp_links
    from labctl.link import settings as settings_mod
    from labctl.link import workers as workers_mod
    from labctl.qkd.errors import AuthenticationError, ChannelTimeout, QkdError
    from labctl.station import Station
    from labctl.store.keystore import KeyStore, store_key_from_config

    settings = settings_mod.KeygenSettings.from_section(config.raw_section("qkd"), file=config.file)
    host, port = parse_address(args.listen, "--listen")
    _warn_idle_workers(settings, args.workers, "alice")
    station = Station.from_config(config)
    async with station:
        try:
            alice = alice_mod.alice_of(station)
            laser_name = keygen.settings_laser_of(config)
            laser = station.instruments[laser_name]
            if not isinstance(alice, alice_mod.TransmitterAlice):
                raise LookupError("Alice prepares her states through no Transmitter instrument")
            if not isinstance(laser, Laser):
                raise LookupError(f"{laser_name!r} is not a Laser instrument of this station")
        except (LookupError, KeyError) as exc:
            log.error("labctl node alice: %s", exc)
            return 2
        alice.reserve(settings.block_pulses, settings.queue_blocks + 2)
        alice_path, _ = keygen.store_paths(config)
        try:
            link_key, pool = link_auth(
                settings, psk, alice_path, "alice", args.psk_file, store_key_from_config(config)
            )
        except QkdError as exc:
            log.error("alice: %s", exc)
            return 2
        try:
            channels = await tcp_links.accept_channels(
                host,
                port,
                args.workers,
                link_key,
                args.timeout_s,
                lambda h, p: print(f"listening on {h}:{p}", flush=True),
                channel_timeout_s=settings.channel_timeout_s,
                on_rejected=_print_rejected,
                control=True,
                pool=pool,
            )
        except (TimeoutError, ChannelTimeout):
            log.error("alice: no Bob within %g s (--timeout)", args.timeout_s)
            return 1
        except QkdError as exc:
            log.error("alice: no link: %s", exc)
            return 1
        workers, control_channel = channels[:-1], channels[-1]
        control = control_mod.AliceControl(control_channel, alice, laser)
        source = TransmitterSource(alice, lambda: control.power_mw)
        controlling = asyncio.create_task(control.serve(stop), name="alice-control")
        with KeyStore(alice_path, encryption_key=store_key_from_config(config)) as store:
            serving[0] = True
            try:
                if len(workers) == 1:
                    node = nodes.AliceNode(workers[0], store, settings, source)
                    results = await node.serve(stop)
                else:
                    results, _ = await workers_mod.serve_alice(
                        workers, store, settings, source, stop=stop
                    )
            except Exception as exc:
                error = _first_qkd_error(exc)
                if error is None:
                    raise
                # Keys already stored stay (Bob holds the same); no further key is produced.
                kind = (
                    "authentication failure" if isinstance(error, AuthenticationError) else "error"
                )
                log.error("alice: key output stopped: %s: %s", kind, error)
                return 1
            finally:
                controlling.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await controlling
                for channel in channels:
                    await channel.close()
    for r in results:
        print(f"block {r.block}: {r.status} ({r.reason}) secret bits {r.secret_bits}")
    total = sum(r.secret_bits - r.auth_key_bits for r in results)  # as stored
    print(f"alice: {total} secret bits from {len(results)} blocks, {args.workers} workers")
    if pool is not None:
        used = sum(r.auth_key_bits for r in results)
        print(
            f"alice: wegman-carter: {used} bits of key to the authentication pool, "
            f"{pool.checks_sent + pool.checks_verified} checkpoints, eps_auth {pool.eps_auth:.3g}"
        )
    print(f"alice: key store {alice_path}")
    return 0


async def _bob(args: argparse.Namespace, config: Any, psk: bytes) -> int:
    from labctl.cli.runsetup import store_locks
    from labctl.link.settings import KeygenSettings

    settings = KeygenSettings.from_section(config.raw_section("qkd"), file=config.file)
    host, port = parse_address(args.connect, "--connect")
    duration_s = args.duration_s
    _warn_idle_workers(settings, args.workers, "bob")
    # Bob calibrates and writes his key store: locked before the link to Alice opens, so a
    # second Bob or a main job on the same stores is refused, naming the holder.
    with store_locks(config, nodes=("bob",)):
        return await _bob_locked(args, config, psk, settings, host, port, duration_s)


async def _bob_locked(
    args: argparse.Namespace,
    config: Any,
    psk: bytes,
    settings: Any,
    host: str,
    port: int,
    duration_s: float | None,
) -> int:
    from experiments.keygen import control as control_mod
    from experiments.keygen import plan as keygen
    from experiments.keygen import steps
    from experiments.sync import alice as alice_mod
    from labctl.cli.run import engine_options, report
    from labctl.link import tcp_links
    from labctl.qkd.auth.channel import AuthenticatedChannel
    from labctl.qkd.errors import QkdError
    from labctl.runner.control import RunControl
    from labctl.runner.engine import RunEngine
    from labctl.runner.signals import abort_on_signals
    from labctl.station import Station
    from labctl.store.keystore import store_key_from_config

    channels: list[AuthenticatedChannel]
    try:
        link_key, pool = link_auth(
            settings,
            psk,
            keygen.store_paths(config)[1],
            "bob",
            args.psk_file,
            store_key_from_config(config),
        )
    except QkdError as exc:
        log.error("bob: %s", exc)
        return 2
    try:
        channels = await tcp_links.connect_channels(
            host,
            port,
            args.workers,
            link_key,
            args.timeout_s,
            channel_timeout_s=settings.channel_timeout_s,
            control=True,
            pool=pool,
        )
        workers, control_channel = channels[:-1], channels[-1]
        remote = await control_mod.RemoteAlice.connect(control_channel)
    except QkdError as exc:
        log.error("bob: no link to Alice: %s", exc)
        return 1

    async def plan(run: Any) -> Any:
        await run.checkpoint()
        report = None if args.skip_calibration else await steps.calibrate(run)
        clock_map = await steps.synchronize(run)
        return await keygen.generate_key(run, clock_map, remote_alice=workers, calibration=report)

    station = Station.from_config(config)
    # Alice's laser is hers: Bob's plans reach it through her node, like her transmitter.
    laser_name = keygen.settings_laser_of(config)
    if laser_name in station.instruments:
        log.error("bob: %r is Alice's laser: remove it from Bob's station", laser_name)
        return 2
    station.instruments[laser_name] = control_mod.RemoteLaser(
        laser_name, control_channel, remote.lock
    )
    alice_mod.attach_alice(station, remote)
    # As in ``labctl run``: the first Ctrl-C/SIGTERM ends the run at its next checkpoint,
    # blocks in flight finish and every channel is closed with link/close, so Alice ends
    # too and both stores hold the same keys; a second one halts.
    control = RunControl()
    try:
        with abort_on_signals(control):
            async with station:
                engine = RunEngine(
                    station,
                    runs_dir=Path(config.storage.runs_dir),
                    config=config.model_dump(mode="json"),
                    **engine_options(config),
                )
                result = await engine.run(
                    plan,
                    name="node-bob",
                    plan_name="labctl node bob",
                    duration_s=duration_s,
                    control=control,
                )
    finally:
        with contextlib.suppress(QkdError):
            await remote.close()
        for channel in channels:
            await channel.close()
    print(f"bob: {args.workers} workers")
    return report(result)


def _main(args: argparse.Namespace) -> int:
    from labctl.cli.common import apply_config_logging
    from labctl.cli.overrides import load_with_overrides

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}", field="--workers")
    args.timeout_s = duration_of(args, "timeout")
    args.duration_s = duration_of(args) if args.duration is not None else None
    psk = read_psk(args.psk_file)  # first: a badly protected key is refused before anything
    loaded = load_with_overrides(args.config, args.set)
    config = loaded.config
    apply_config_logging(args, config)
    quiet_console()
    for change in loaded.overrides.applied:
        log.info("--set %s", change)
    if loaded.overrides.args:
        names = ", ".join(sorted(loaded.overrides.args))
        raise ConfigError(
            f"{names}: not a key of any section of the station file (the node plans take "
            "no plan arguments); use SECTION.KEY=VALUE",
            field="--set",
        )
    if args.role == "bob" and args.duration_s is None:
        args.duration_s = parse_duration_s(DEFAULT_DURATION)
    runner: Callable[[argparse.Namespace, Any, bytes], Awaitable[int]]
    if args.role == "alice":
        if not args.listen:
            raise ConfigError("alice needs --listen HOST:PORT", field="--listen")
        runner = _alice
    else:
        if not args.connect:
            raise ConfigError("bob needs --connect HOST:PORT", field="--connect")
        runner = _bob
    return asyncio.run(runner(args, config, psk))


def register(subparsers: Any) -> None:
    """Add ``labctl node``."""
    parser = subparsers.add_parser(
        "node", help="run Alice or Bob as its own process, talking over authenticated TCP"
    )
    parser.add_argument("role", choices=("alice", "bob"), help="which node this process is")
    parser.add_argument("config", help="station file (YAML)")
    parser.add_argument("--listen", help="alice: HOST:PORT to accept Bob on (port 0 = any)")
    parser.add_argument("--connect", help="bob: HOST:PORT of Alice")
    parser.add_argument("--psk-file", required=True, help="pre-shared authentication key file")
    add_duration(parser, f"bob: run-clock time to generate key, default {DEFAULT_DURATION}")
    parser.add_argument(
        "--skip-calibration",
        action="store_true",
        help="bob: the station is already calibrated; synchronize and generate key only",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="blocks post-processed at once, one TCP channel each (the same on both nodes)",
    )
    add_timeout(parser, "how long to wait for the peer to connect", DEFAULT_TIMEOUT)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a station file key (qkd.block_pulses=1e7, or block_pulses=1e7 when one section "
        "has it); repeatable",
    )
    parser.set_defaults(func=_main)
