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
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.calibration.common import CalibrationFailed
from experiments.keygen import drift, latch, monitor, steps
from experiments.keygen.acquisition import ClockMap, RawBlock, acquire_block
from experiments.keygen.nodes import (
    AliceNode,
    AliceSource,
    BlockResult,
    BobNode,
    TransmitterSource,
)
from experiments.keygen.pipeline import BlockPipeline, CommitSequencer
from experiments.keygen.settings import KeygenSettings
from experiments.keygen.summary import KeySummary
from experiments.keygen.workers import ParallelPipeline, bob_workers
from experiments.sync.alice import AliceSide, TransmitterAlice, alice_of
from experiments.sync.model import SyncError
from experiments.sync.plan import sync_settings
from experiments.sync.settings import SyncSettings
from labctl.interfaces.devices import TimeTagger
from labctl.qkd.auth import AuthenticatedChannel, memory_pair
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
    """The main job: calibrate, synchronize, generate key; returns the summary."""
    await run.checkpoint()
    with run.progress.task("calibrate", total=1) as task:
        report = await steps.calibrate(run)
        task.advance()
    run.emit("calibration", {"report": report})
    with run.progress.task("synchronize", total=1) as task:
        clock_map = await steps.synchronize(run)
        task.advance()
    return await generate_key(run, clock_map)


async def generate_key(
    run: PlanContext,
    clock_map: ClockMap,
    *,
    source: AliceSource | None = None,
    channels: tuple[AuthenticatedChannel, AuthenticatedChannel] | None = None,
    remote_alice: AuthenticatedChannel | Sequence[AuthenticatedChannel] | None = None,
) -> dict[str, Any]:
    """Key generation on a synchronized station.

    Alice runs in this process on ``channels[0]`` (a fresh in-memory pair when None), or,
    with ``remote_alice`` (Bob's end of a TCP channel), in another process (``labctl node``).
    Several remote channels: one worker per channel, that many blocks in flight at once
    (:class:`~experiments.keygen.workers.ParallelPipeline`), keys committed in block order.
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
    summary = KeySummary(run.run_id, 1e12 / period_ps)
    summary.sync_offset_ps, summary.sync_drift_ppb = steps.sync_figures(clock_map)
    run.emit("sync", {"offset_ps": summary.sync_offset_ps, "drift_ppb": summary.sync_drift_ppb})
    async with contextlib.AsyncExitStack() as stack:
        bob_store = stack.enter_context(KeyStore(bob_path, encryption_key=store_key))
        summary.extra["key_store_bob"] = str(bob_path)
        alice_task: asyncio.Task[list[BlockResult]] | None = None
        if remote_alice is None:
            if source is None:
                if not isinstance(alice, TransmitterAlice):
                    raise RuntimeError("Alice's node is remote: her node answers sifting")
                power_mw = await run.instrument(settings_laser(run)).get_power_mw()
                source = TransmitterSource(alice, lambda: power_mw)
            if channels is None:
                channels = memory_pair(os.urandom(32), settings.channel_timeout_s)
            alice_store = stack.enter_context(KeyStore(alice_path, encryption_key=store_key))
            summary.extra["key_store_alice"] = str(alice_path)
            alice_node = AliceNode(channels[0], alice_store, settings, source, run.run_id)
            alice_task = asyncio.create_task(alice_node.serve(), name="alice-node")
            bob_channels = [channels[1]]
        elif isinstance(remote_alice, AuthenticatedChannel):
            bob_channels = [remote_alice]
        else:
            bob_channels = list(remote_alice)
        summary.extra["workers"] = len(bob_channels)
        sequencer = CommitSequencer() if len(bob_channels) > 1 else None
        bobs = [BobNode(ch, bob_store, settings, run.run_id, sequencer) for ch in bob_channels]

        def on_result(result: BlockResult) -> None:
            summary.add(result)
            watch.observe(result)
            if tracking is not None:
                tracking.observe(result)
            event = result.event()
            event.pop("key_id")
            event["started_s"] = watch.started_s.pop(result.block, None)
            run.emit("qkd", event)
            _publish_link(run, settings.link_id, result)
            run.log.info(
                "block %d: %s (%s), QBER Z %s, secret bits %d",
                result.block,
                result.status,
                result.reason,
                "n/a" if result.qber_z is None else f"{100 * result.qber_z:.2f} %",
                result.secret_bits,
            )

        pipeline: Pipeline
        if len(bobs) == 1:
            pipeline = BlockPipeline(bobs[0].process, on_result, max_queue=settings.queue_blocks)
        else:
            pipeline = ParallelPipeline(
                bob_workers(bobs), on_result, max_queue=settings.queue_blocks
            )
        pipeline.start()
        watch = monitor.install(run, settings, lambda: pipeline.wait_pending_at_most(0))
        tracking = _install_tracking(run, settings, watch, pipeline)
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
                run, settings, pipeline, tagger, block_clock, watch, alice, bob_wiring, tracking
            )
        except StopPlan as stop:
            summary.status, summary.reason = stop.status, stop.reason
            raise
        finally:
            await _wind_down(run, pipeline, bobs, alice_task, summary, settings)
            summary.backlog = vars(pipeline.stats).copy()
            summary.write(run.folder.path)
            run.log.info("%s", summary.text())
    totals = summary.totals()
    if summary.status != "ok":
        raise StopPlan("aborted", summary.reason)
    return {k: totals[k] for k in ("secret_bits", "qber_z", "key_rate_per_pulse")}


async def _acquire_loop(
    run: PlanContext,
    settings: KeygenSettings,
    pipeline: Pipeline,
    tagger: Any,
    block_clock: steps.BlockClock,
    watch: monitor.QberWatch,
    alice: AliceSide,
    detector_channels: list[int],
    tracking: drift.Tracking | None = None,
) -> None:
    """Acquire blocks until the run's deadline (or forever), handing each to the pipeline.

    Per block: the clock map is refreshed on Alice's calibration frame (Bob's stream is
    left running), Alice plays fresh states once and learns the first pulse's index from
    her frame marker, Bob reads that window, and the calibration frame plays again.
    """
    period_ps = alice.period_ps
    block_s = settings.block_pulses * period_ps * 1e-12
    deadline = run.deadline_s
    total = (
        None
        if deadline is None
        else max(int((deadline - run.clock.now_s()) // settings.block_interval_s), 1)
    )
    rng = np.random.default_rng()
    block = 0
    with run.progress.task("key blocks", total=total) as progress:
        while True:
            await run.checkpoint()
            if pipeline.failed:
                return
            start_s = run.clock.now_s()
            if deadline is not None and start_s + block_s > deadline:
                return
            await alice.ensure_light()
            if tracking is not None:
                await tracking.before_block(block)
            clock_map = await block_clock.for_block(run, tagger)
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
                )
            finally:
                if not playing.done():
                    playing.cancel()
                await asyncio.gather(playing, return_exceptions=True)
                await alice.ensure_light()
            if raw is None:  # the lock was lost and is found again: this block is dropped
                continue
            pipeline.submit(raw)
            watch.acquired(block, start_s)
            if tracking is not None:
                tracking.acquired(block)
            block += 1
            progress.advance()
            if run.clock.is_virtual:
                # Simulated time costs no wall time, so without this the clock would race
                # ahead of post-processing; real hardware needs no such wait (see benchmark).
                await pipeline.wait_pending_at_most(1)
            # On the wall clock a block costs more than its pulses (a transmitter fed slower
            # than it plays, post-processing): a block that cannot end before the deadline,
            # with its post-processing, is not started.
            block_s = max(block_s, 2.0 * (run.clock.now_s() - start_s))
            next_s = start_s + settings.block_interval_s
            if deadline is not None and max(next_s, run.clock.now_s()) + block_s > deadline:
                return
            await run.sleep(max(next_s - run.clock.now_s(), 0.0))


def _install_tracking(
    run: PlanContext, settings: KeygenSettings, watch: monitor.QberWatch, pipeline: Pipeline
) -> drift.Tracking | None:
    """Polarization drift tracking and the key-stall suspender (``qkd.drift_dither_rad``)."""
    if settings.drift_dither_rad == 0.0 or watch.remedy is None:
        return None
    try:
        chosen = drift.tracking_settings(
            run,
            dither_rad=settings.drift_dither_rad,
            no_key_blocks=settings.stall_blocks,
            margin_qber=settings.stall_margin_qber,
        )
        pc = drift.controller(run)
    except CalibrationFailed as exc:  # no polarization controller: nothing to track with
        run.log.warning("polarization drift not tracked: %s", exc)
        return None
    wait = None
    if run.clock.is_virtual:  # post-processing takes no simulated time: wait for its results

        async def wait() -> None:
            await drift.wait_at_most(
                lambda: pipeline.wait_pending_at_most(0), settings.channel_timeout_s
            )

    tracking = drift.install(
        run,
        pc,
        watch.remedy,
        settings=chosen,
        wait_results=wait,
        settle_s=settings.suspend_settle_s,
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
