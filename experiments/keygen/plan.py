"""The main job: calibrate, synchronize, then generate key block by block until the run ends.

``labctl run configs/sim.yaml --duration 2m`` runs :func:`main`. Alice and Bob are two
nodes in this process talking only through an authenticated in-memory channel (the same
nodes run as two processes with ``labctl node``). A block is ``qkd.block_pulses`` pulses
acquired from Bob's tagger; blocks start every ``qkd.block_interval_s`` of run clock (the
simulated world cannot generate 1 GHz of pulses continuously in real time, so acquisition
is duty-cycled; rates are reported per pulse and per second of acquisition). Each block
goes to the post-processing pipeline without waiting; results go to the run's sinks
(stream ``qkd``) — never key bits — and keys to both key stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.calibration.common import CalibrationFailed
from experiments.keygen import drift, guard, latch, monitor, renewal, steps
from experiments.keygen.acquisition import ClockMap, acquire_block
from experiments.keygen.block_dataset import block_dataset, block_row
from experiments.keygen.checkpoint import (
    AuthResume,
    CheckpointError,
    Committer,
    FreshKeyAuth,
    KeygenState,
    WatchedKeyStore,
    calibrated_state,
    reconcile,
)
from experiments.keygen.resume import RunAges, reuse_calibration
from experiments.keygen.source import TransmitterSource
from experiments.keygen.summary import KeySummary
from experiments.sync.alice import AliceSide, TransmitterAlice, alice_of
from experiments.sync.model import SyncError
from experiments.sync.plan import sync_settings
from experiments.sync.settings import SyncSettings
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.units import PS_PER_S, ps_to_seconds
from labctl.link.block import RawBlock
from labctl.link.nodes import (
    AliceNode,
    AliceSource,
    BlockResult,
    BobNode,
)
from labctl.link.pipeline import BlockPipeline, CommitSequencer
from labctl.link.settings import KeygenSettings
from labctl.link.workers import ParallelPipeline, bob_workers
from labctl.qkd.auth.channel import AuthenticatedChannel, MemoryTransport, memory_pair
from labctl.qkd.auth.transcript import (
    EPS_PER_CHECK,
    AuthPool,
    TranscriptAuthenticator,
    open_local_pair,
)
from labctl.qkd.errors import AuthenticationError
from labctl.runner.plan_context import PlanContext
from labctl.runner.status import StopPlan
from labctl.store.keystore import KeyStore, node_store_path, store_key_from_config

LINK_METRICS = ("qber", "skr")

Pipeline = BlockPipeline[Any, BlockResult] | ParallelPipeline[Any, BlockResult]


def _config(run: PlanContext) -> Any:
    config = getattr(run.station, "config", None)
    if config is None:
        raise RuntimeError(
            "key generation needs a station built from a config (run.station.config)"
        )
    return config


def detector_wiring(sync: SyncSettings) -> list[int]:
    """Bob's tagger input of each detector, in code order Z0, Z1, X0, X1."""
    by_name = {name: channel for channel, name in sync.channels.items()}
    return [by_name[name] for name in ("Z0", "Z1", "X0", "X1")]


def settings_laser(run: PlanContext) -> str:
    """Alice's laser instrument name (the calibration section's, else ``laser``)."""
    return settings_laser_of(_config(run))


def settings_laser_of(config: Any) -> str:
    """Alice's laser instrument name in a station config."""
    roles = (config.raw_section("calibration") or {}).get("instruments") or {}
    return str(roles.get("laser", "laser"))


def store_paths(config: Any) -> tuple[Path, Path]:
    """(alice, bob) key store files derived from ``storage.key_store``."""
    base = Path(config.storage.key_store)
    if not base.is_absolute():
        base = config.config_dir / base
    return node_store_path(base, "alice"), node_store_path(base, "bob")


def _publish_link(run: PlanContext, link_id: str, result: BlockResult) -> None:
    """Per-block link metrics (ETSI GS QKD 015 names) when the run has an MQTT publisher."""
    publisher = getattr(run, "publisher", None)
    publish = getattr(publisher, "publish_link_metric", None)
    if publish is None:
        return
    event = result.event()
    qber = {
        k: v for k, v in (("qber_z", result.qber_z), ("qber_x", result.qber_x)) if v is not None
    }
    try:
        # GS QKD 015 link status: ACTIVE while blocks give key, PASSIVE when one gives none
        publish(link_id, "status", {"status": "ACTIVE" if result.secret_bits > 0 else "PASSIVE"})
        if qber:
            publish(link_id, "qber", qber)
        publish(link_id, "skr", {"skr_bps": event["secret_key_rate_bps"]})
        if result.acquired_s > 0:
            publish(link_id, "sifted", {"sifted_rate_bps": result.sifted_bits / result.acquired_s})
        publish(link_id, "key_stored", {"key_stored_bits": result.secret_bits})
    except Exception as exc:  # streaming is a side channel: it never stops key generation
        run.log.warning("link metrics not published: %s: %s", type(exc).__name__, exc)


async def main(run: PlanContext) -> dict[str, Any]:
    """The main job: calibrate, synchronize, generate key; returns the summary.

    Resumed (``labctl resume``), it continues the key plan from its last committed block
    (``experiments.keygen.checkpoint``), reusing the calibration while it is valid
    (``experiments.keygen.resume``).
    """
    await run.checkpoint()
    state = KeygenState.from_checkpoint(run.resume_state)
    ages = RunAges.start(run.clock, state)
    reused = None if state is None else await reuse_calibration(run, state)
    report: dict[str, Any] | None = None  # this run's calibrations (None: reused from the store)
    if reused is not None:
        ages.calibrated(reused)
    else:
        with run.progress.task("calibrate", total=1) as task:
            report = await steps.calibrate(run)
            task.advance()
        run.emit("calibration", {"report": report})
        if report["passed"]:
            ages.calibrated()
            # A crash from here on resumes without recalibrating (while it stays valid).
            run.commit(calibrated_state(state, ages))
    with run.progress.task("synchronize", total=1) as task:
        clock_map = await steps.synchronize(run)
        task.advance()
    return await generate_key(run, clock_map, calibration=report, state=state, ages=ages)


async def generate_key(
    run: PlanContext,
    clock_map: ClockMap,
    *,
    source: AliceSource | None = None,
    channels: tuple[AuthenticatedChannel, AuthenticatedChannel] | None = None,
    remote_alice: AuthenticatedChannel | Sequence[AuthenticatedChannel] | None = None,
    calibration: dict[str, Any] | None = None,
    state: KeygenState | None = None,
    ages: RunAges | None = None,
    auth: AuthResume | None = None,
) -> dict[str, Any]:
    """Key generation on a synchronized station.

    Alice runs in this process on ``channels[0]`` (a fresh in-memory pair when None), or,
    with ``remote_alice`` (Bob's end of a TCP channel), in another process (``labctl node``).
    Several remote channels: one worker per channel, that many blocks in flight at once
    (:class:`~labctl.link.workers.ParallelPipeline`), keys committed in block order.
    Keys are stored only on trust (:mod:`experiments.keygen.trust`): every calibration
    passed (``calibration``: this run's summary, failures in it count) and unexpired, and
    no alarm of the link monitors (:mod:`experiments.keygen.guard`) around the block.

    Every committed block rewrites the run's checkpoint; with ``state`` (a resumed run) the
    stores are reconciled to it first and block numbers and sums continue from it.
    ``auth`` carries the channel authentication's state over resumes (default: the HMAC
    channel under a fresh key, which has none).
    """
    config = _config(run)
    settings = KeygenSettings.from_section(config.raw_section("qkd"), file=config.file)
    alice = alice_of(run.station)
    # Alice answers sifting for every block still in the pipeline (she releases a block's
    # states once served); this bounds her record if Bob falls behind.
    alice.reserve(settings.block_pulses, settings.queue_blocks + 2)
    period_ps = alice.period_ps
    bob_wiring = detector_wiring(sync_settings(run.station))
    tagger = run.instrument("tagger-bob", TimeTagger)
    alice_path, bob_path = store_paths(config)
    store_key = store_key_from_config(config)  # None: plain store (storage.key_store_key_file)
    summary = KeySummary(run.run_id, PS_PER_S / period_ps)
    summary.sync_offset_ps, summary.sync_drift_ppb = steps.sync_figures(clock_map)
    run.emit("sync", {"offset_ps": summary.sync_offset_ps, "drift_ppb": summary.sync_drift_ppb})
    resumed = state is not None
    state = state or KeygenState()
    ages = ages or RunAges.start(run.clock, None)
    auth = auth or FreshKeyAuth()
    auth.resume_from(state.auth if resumed else None)
    summary.sums = dataclasses.replace(state.sums)
    committer = Committer(
        state,
        summary,
        lambda result: on_commit(result),
        run.commit,
        ages,
        alice_local=remote_alice is None,
        auth=auth,
    )
    async with contextlib.AsyncExitStack() as stack:
        bob_store = stack.enter_context(KeyStore(bob_path, encryption_key=store_key))
        summary.extra["key_store_bob"] = str(bob_path)
        stores = [bob_store]
        alice_task: asyncio.Task[list[BlockResult]] | None = None
        if remote_alice is None:
            if source is None:
                if not isinstance(alice, TransmitterAlice):
                    raise RuntimeError("Alice's node is remote: her node answers sifting")
                power_mw = await run.instrument(settings_laser(run)).get_power_mw()
                source = TransmitterSource(alice, lambda: power_mw)
            if channels is None:
                channels = _local_channels(settings, alice_path, bob_path, store_key)
            alice_store = stack.enter_context(
                WatchedKeyStore(
                    alice_path, on_add=committer.stored_at_alice, encryption_key=store_key
                )
            )
            stores.append(alice_store)
            summary.extra["key_store_alice"] = str(alice_path)
            alice_node = AliceNode(channels[0], alice_store, settings, source, run.run_id)
            alice_task = asyncio.create_task(alice_node.serve(), name="alice-node")
            bob_channels = [channels[1]]
        elif isinstance(remote_alice, AuthenticatedChannel):
            bob_channels = [remote_alice]
        else:
            bob_channels = list(remote_alice)
        summary.extra["workers"] = len(bob_channels)
        if resumed:
            _reconcile_resumed(run, stores, state, summary)
        sequencer = CommitSequencer() if len(bob_channels) > 1 else None
        bobs = [BobNode(ch, bob_store, settings, run.run_id, sequencer) for ch in bob_channels]
        link_monitor = guard.install(run, config, calibration)
        for bob in bobs:
            bob.key_gate = link_monitor
        blocks_data = block_dataset(run)
        started_s: dict[int, float | None] = {}

        def on_result(result: BlockResult) -> None:
            watch.observe(result)
            if tracking is not None:
                tracking.observe(result)
            # The monitors judge a block when its result is in; its event goes out on commit.
            started_s[result.block] = link_monitor.observe(result)
            committer.result(result)

        def on_commit(result: BlockResult) -> dict[str, Any]:
            event = result.event()
            event.pop("key_id")
            # Run clock: the block spans started_s + acquired_s.
            event["started_s"] = started_s.pop(result.block, None)
            blocks_data.add(**block_row(event))  # before the commit, which names its row
            _publish_link(run, settings.link_id, result)
            run.log.info(
                "block %d: %s (%s), QBER Z %s, secret bits %d",
                result.block,
                result.status,
                result.reason,
                "n/a" if result.qber_z is None else f"{100 * result.qber_z:.2f} %",
                result.secret_bits,
            )
            return event  # emitted by the commit, with the state

        pipeline: Pipeline
        if len(bobs) == 1:
            pipeline = BlockPipeline(bobs[0].process, on_result, max_queue=settings.queue_blocks)
        else:
            pipeline = ParallelPipeline(
                bob_workers(bobs), on_result, max_queue=settings.queue_blocks
            )
        pipeline.start()
        watch = monitor.install(run, settings, lambda: pipeline.wait_pending_at_most(0))
        tracking = _install_tracking(run, settings, watch)
        renewing = renewal.install(
            run,
            link_monitor.store,
            link_monitor.gate.settings.require,
            block_interval_s=settings.block_interval_s,
            block_s=ps_to_seconds(settings.block_pulses * alice.period_ps),
            drain=lambda: pipeline.wait_pending_at_most(0),
            polarization=watch.remedy,
        )
        detectors = latch.install(run)
        if detectors is not None:
            watch.before_calibration.append(lambda: latch.reset_latched(run, detectors))
        if alice_task is not None:

            def alice_done(task: asyncio.Task[list[BlockResult]]) -> None:
                if not task.cancelled() and task.exception() is not None:
                    pipeline.abort(task.exception() or RuntimeError("alice failed"))

            alice_task.add_done_callback(alice_done)
        try:
            block_clock = steps.BlockClock(clock_map)
            await _acquire_loop(
                run,
                settings,
                pipeline,
                tagger,
                block_clock,
                watch,
                alice,
                bob_wiring,
                link_monitor,
                committer,
                tracking,
                renewing,
            )
        except StopPlan as stop:
            if stop.status != "timeout":
                summary.status, summary.reason = stop.status, stop.reason
                raise
            # The run's duration ran out between blocks (e.g. while suspended): that is how a
            # main job with a duration ends; the summary's verdict judges the blocks it made.
            run.log.info("%s", stop.reason)
        finally:
            await _wind_down(run, pipeline, bobs, alice_task, summary, settings)
            _account_authentication(summary, settings, bobs[0].pool)
            if alice_task is not None:
                _drop_uncommitted(run, stores, committer, summary)
            if resumed:
                summary.run_time_s = ages.run_time_s()
                summary.clock = "simulated" if run.clock.is_virtual else "wall"
            summary.backlog = vars(pipeline.stats).copy()
            summary.extra["trust"] = link_monitor.gate.summary()
            summary.write(run.folder.path)
            run.log.info("%s", summary.text())
    totals = summary.totals()
    if summary.status != "ok":
        raise StopPlan("aborted", summary.reason)
    return {k: totals[k] for k in ("secret_bits", "qber_z", "key_rate_per_pulse")}


def _local_channels(
    settings: KeygenSettings, alice_store: Path, bob_store: Path, store_key: bytes | None
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    """Alice's and Bob's ends of the in-process link, under ``qkd.auth``."""
    if settings.auth == "hmac":
        return memory_pair(os.urandom(32), settings.channel_timeout_s)
    alice_pool, bob_pool = open_local_pair(alice_store, bob_store, store_key)
    ta, tb = MemoryTransport.pair()
    hmac_key = os.urandom(32)  # the per-message layer; the pools carry the proof
    return (
        AuthenticatedChannel(
            ta,
            hmac_key,
            "alice",
            settings.channel_timeout_s,
            transcript=TranscriptAuthenticator(alice_pool),
        ),
        AuthenticatedChannel(
            tb,
            hmac_key,
            "bob",
            settings.channel_timeout_s,
            transcript=TranscriptAuthenticator(bob_pool),
        ),
    )


def _account_authentication(
    summary: KeySummary, settings: KeygenSettings, pool: AuthPool | None
) -> None:
    """summary.json: what authentication cost and the run's total security parameter."""
    eps_auth = 0.0 if pool is None else pool.eps_auth
    if pool is not None:
        summary.extra["authentication"] = {
            "mode": "wegman-carter",
            "checkpoints": pool.checks_sent + pool.checks_verified,
            "eps_per_checkpoint": EPS_PER_CHECK,
            "eps_auth": eps_auth,
            "pad_bits_used": pool.slots_used * 128,
            "refill_bits": pool.refill_bits,
            "pool_bits_left": {d: 128 * pool.available(d) for d in ("ab", "ba")},
        }
    else:
        summary.extra["authentication"] = {"mode": settings.auth, "eps_auth": None}
    # Composable security: each stored block's eps_sec + eps_cor, plus the union bound over
    # every authentication check (HMAC has no information-theoretic bound: null).
    per_block = settings.eps_sec + settings.eps_cor
    summary.extra["eps_auth"] = eps_auth if pool is not None else None
    summary.extra["eps_total"] = (
        summary.sums.blocks_with_key * per_block + eps_auth if pool is not None else None
    )


async def _acquire_loop(
    run: PlanContext,
    settings: KeygenSettings,
    pipeline: Pipeline,
    tagger: Any,
    block_clock: steps.BlockClock,
    watch: monitor.QberWatch,
    alice: AliceSide,
    detector_channels: list[int],
    link_monitor: guard.LinkMonitor,
    committer: Committer,
    tracking: drift.Tracking | None = None,
    renewing: renewal.Renewal | None = None,
) -> None:
    """Acquire blocks until the run's deadline (or forever), handing each to the pipeline.

    Per block: the clock map is refreshed on Alice's calibration frame (Bob's stream is
    left running), Alice plays fresh states once and learns the first pulse's index from
    her frame marker, Bob reads that window, and the calibration frame plays again. Block
    numbers continue from ``committer``'s state; each pause point persists that state.
    """
    period_ps = alice.period_ps
    block_s = ps_to_seconds(settings.block_pulses * period_ps)
    deadline = run.deadline_s
    total = (
        None
        if deadline is None
        else max(int((deadline - run.clock.now_s()) // settings.block_interval_s), 1)
    )
    rng = np.random.default_rng()
    with run.progress.task("key blocks", total=total) as progress:
        while True:
            await run.checkpoint(committer.snapshot())
            block = committer.state.next_block
            if pipeline.failed:
                return
            start_s = run.clock.now_s()
            if deadline is not None and start_s + block_s > deadline:
                return
            if renewing is not None:  # before the light check: calibration plays its frames
                await renewing.before_block(run)
            await alice.ensure_light()
            if tracking is not None:
                await tracking.before_block(block)
            clock_map = await block_clock.for_block(run, tagger)
            link_monitor.gate.block_started(block, run.clock.now_s())
            # Bob reads while Alice plays: a tagger buffers only so long.
            playing = asyncio.ensure_future(alice.play_key_block(settings.block_pulses))
            try:
                raw = await _acquire_or_resync(
                    run,
                    block_clock,
                    tagger,
                    block=block,
                    pulses=settings.block_pulses,
                    period_ps=period_ps,
                    clock_map=clock_map,
                    detector_channels=detector_channels,
                    rng=rng,
                    now_s=start_s,
                    window=playing,
                    tracker=block_clock.tracker,
                    max_clicks_per_pulse=link_monitor.click_ceiling(),
                )
            finally:
                if not playing.done():
                    playing.cancel()
                await asyncio.gather(playing, return_exceptions=True)
                await alice.ensure_light()
            if raw is None:  # the lock was lost and is found again: this block is dropped
                continue
            # The monitors look at the link after the block, before its key can be stored.
            await link_monitor.after_block(block, raw)
            committer.acquired(block)
            pipeline.submit(raw)
            watch.acquired(block)
            if tracking is not None:
                tracking.acquired(block)
            progress.advance()
            if run.clock.is_virtual:
                # Simulated time costs no wall time, so without this the clock would race
                # ahead of post-processing; real hardware needs no such wait (see benchmark).
                # The whole block, not all but one: overlapping a block's post-processing
                # with the next acquisition gains no wall time here, and it holds two
                # blocks' states and tags at once.
                await pipeline.wait_pending_at_most(0)
            # On the wall clock a block costs more than its pulses (a transmitter fed slower
            # than it plays, post-processing): a block that cannot end before the deadline,
            # with its post-processing, is not started.
            block_s = max(block_s, 2.0 * (run.clock.now_s() - start_s))
            next_s = start_s + settings.block_interval_s
            if deadline is not None and max(next_s, run.clock.now_s()) + block_s > deadline:
                return
            await run.sleep(max(next_s - run.clock.now_s(), 0.0))


def _install_tracking(
    run: PlanContext, settings: KeygenSettings, watch: monitor.QberWatch
) -> drift.Tracking | None:
    """Polarization drift tracking (off with ``qkd.drift_dither_rad: 0``) and the key-stall
    suspender."""
    if watch.remedy is None:
        return None
    track = settings.drift_dither_rad > 0.0
    try:
        chosen = drift.tracking_settings(
            run,
            dither_rad=settings.drift_dither_rad if track else drift.TrackingSettings.dither_rad,
            reference_pairs=settings.drift_reference_pairs,
            no_key_blocks=settings.stall_blocks,
            margin_qber=settings.stall_margin_qber,
        )
        pc = drift.controller(run)
    except CalibrationFailed as exc:  # no polarization controller: nothing to track with
        run.log.warning("polarization drift not tracked: %s", exc)
        return None
    tracking = drift.install(
        run, pc, watch.remedy, settings=chosen, settle_s=settings.suspend_settle_s, track=track
    )
    watch.after_calibration.append(tracking.recalibrated)
    return tracking


async def _acquire_or_resync(
    run: PlanContext, block_clock: steps.BlockClock, tagger: TimeTagger, **block: Any
) -> RawBlock | None:
    """One block, or None when Bob's clock map no longer fits (e.g. a tagger restarted):
    the link is resynchronized and the block, never post-processed, is dropped."""
    try:
        return await acquire_block(tagger, **block)
    except SyncError as exc:
        run.log.warning("block dropped: %s", exc)
        run.emit("sync", {"action": "resynchronize", "reason": str(exc)})
        await block_clock.resynchronize(run)
        return None


def _reconcile_resumed(
    run: PlanContext, stores: list[KeyStore], state: KeygenState, summary: KeySummary
) -> None:
    """A resumed run: the stores hold exactly its committed keys before any new block."""
    try:
        done = reconcile(stores, run.run_id, state)
    except CheckpointError as exc:
        raise StopPlan("failed", str(exc)) from None
    summary.key_ids = list(done.key_ids)
    run.log.info(
        "resumed at block %d (committed through %d): %d key(s) of %d bits; uncommitted "
        "key(s) deleted %s, completed %s",
        state.next_block,
        state.committed_block,
        len(done.key_ids),
        state.sums.secret_bits,
        done.deleted,
        done.completed,
    )
    run.emit(
        "qkd",
        {
            "action": "resumed",
            "next_block": state.next_block,
            "committed_block": state.committed_block,
            "keys": len(done.key_ids),
            "deleted": done.deleted,
            "completed": done.completed,
        },
    )


def _drop_uncommitted(
    run: PlanContext, stores: list[KeyStore], committer: Committer, summary: KeySummary
) -> None:
    """After the link closed: a key Bob stored that never reached Alice is deleted at Bob."""
    if committer.uncommitted == 0:
        return
    try:
        done = reconcile(stores, run.run_id, committer.state)
    except CheckpointError as exc:
        summary.status, summary.reason = "failed", str(exc)
        run.log.error("%s", exc)
        return
    run.log.warning("uncommitted key(s) deleted at the end: %s", done.deleted)


async def _wind_down(
    run: PlanContext,
    pipeline: Pipeline,
    bobs: list[BobNode],
    alice_task: asyncio.Task[list[BlockResult]] | None,
    summary: KeySummary,
    settings: KeygenSettings,
) -> None:
    """Finish queued blocks, close the link and collect why key output stopped, if it did."""
    try:
        await pipeline.finish(timeout_s=settings.channel_timeout_s * 4)
    except TimeoutError:
        summary.status, summary.reason = "failed", "post-processing did not finish in time"
    alice_running = alice_task is not None and not alice_task.done()
    if pipeline.error is None and (alice_task is None or alice_running):
        for bob in bobs:  # every worker's channel: each of Alice's nodes waits on its own
            try:
                await bob.close()
            except Exception as exc:  # the link may already be down
                run.log.warning("closing the classical link failed: %s", type(exc).__name__)
    elif alice_task is not None and alice_running:
        alice_task.cancel()  # Bob failed: Alice would only wait for a message that never comes
    if alice_task is not None:
        try:
            await asyncio.wait_for(alice_task, settings.channel_timeout_s)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if pipeline.error is None:
                pipeline.error = exc
    error = pipeline.error
    if error is not None:
        kind = "authentication failure" if isinstance(error, AuthenticationError) else "error"
        summary.status = "aborted"
        summary.reason = f"key output stopped: {kind}: {type(error).__name__}: {error}"
        run.log.error(summary.reason)
        run.emit("qkd", {"action": "key-output-stopped", "reason": summary.reason})
