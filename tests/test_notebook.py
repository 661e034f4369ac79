"""labctl.notebook.open_station: qcodes instruments that work from inside a running loop.

A notebook cell runs inside Jupyter's event loop; these tests call the synchronous qcodes
API from inside a running asyncio loop the same way (the notebooks themselves run under a
real kernel in tests/runner and tests/experiments).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from qcodes.dataset import load_by_guid
from qcodes.dataset.sqlite.database import connect

from labctl.interfaces import Laser, SinglePhotonDetector
from labctl.notebook import open_station
from labctl.station.qcodes_bridge import LoopThreadError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

STATION = """
lab: notebook
node: demo
world:
  class: sims.world:World
  settings: {seed: 7}
instruments:
  laser:
    class: sims.twins:SimLaser
    settings: {power_mw: 1.0}
  detectors:
    class: sims.twins:SimDetector
    settings: {channels: [Z0, Z1, X0, X1]}
storage:
  runs_dir: runs
"""


def _station_file(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(STATION)
    return path


async def rates(run: Any) -> list[float]:
    """Laser on, every channel enabled, one total count rate per step (dataset + events)."""
    laser = run.find(Laser)[0]
    detector = run.find(SinglePhotonDetector)[0]
    await laser.set_output(True)
    for ch in range(detector.n_channels):
        await detector.set_enabled(ch, True)
    data = run.dataset("rates", setpoints=["step"], measured=["total_rate_hz"])
    totals = []
    for step in range(int(run.args.get("n", 3))):
        total = sum(await detector.get_count_rates_hz(0.01))
        data.add(step=step, total_rate_hz=total)
        totals.append(total)
        await run.checkpoint()
        await run.sleep(1.0)
    return totals


async def test_qcodes_parameters_and_runs_work_inside_a_running_loop(tmp_path: Path) -> None:
    with open_station(_station_file(tmp_path)) as lab:
        laser, detectors = lab["laser"], lab["detectors"]
        power = laser.power_mw
        # Synchronous qcodes calls from a coroutine, as a notebook cell makes them.
        laser.power_mw(0.25)
        detectors.ch2_bias_ua(8.5)
        detectors.ch2_trigger_level_mv(40.0)
        assert laser.power_mw() == 0.25 and detectors.ch2_bias_ua() == 8.5
        assert lab.call(lab.station.instruments["laser"].get_power_mw()) == 0.25
        units = {name: p.unit for name, p in detectors.parameters.items()}
        assert units["ch2_bias_ua"] == "µA" and units["ch2_trigger_level_mv"] == "mV"
        assert units["ch0_count_rate_hz"] == "Hz" and laser.wavelength_nm.unit == "nm"
        snapshot = lab.qcodes.snapshot(update=True)
        assert snapshot["instruments"]["laser"]["parameters"]["power_mw"]["value"] == 0.25
        with pytest.raises(KeyError, match=r"no instrument 'tagger'.*'detectors', 'laser'"):
            lab["tagger"]

        blocking = lab.run(rates, name="InLoop", args={"n": 3})
        awaited = await lab.run_async(rates, name="awaited", args={"n": 2})
        assert blocking.status == "ok" and awaited.status == "ok", (blocking, awaited)
        assert blocking.path.name.endswith("-InLoop")
        assert len(blocking.result) == 3 and all(t > 0 for t in blocking.result)
        # The run left the laser in its safe state; qcodes sees it.
        assert laser.output() is False
        guid = json.loads((blocking.path / "metadata.json").read_text())["datasets"]["rates"]
        loaded = load_by_guid(guid, conn=connect(str(blocking.path / "data.db")))
        assert loaded.paramspecs["total_rate_hz"].unit == "Hz"
        assert loaded.get_parameter_data()["total_rate_hz"]["step"].tolist() == [0, 1, 2]
    assert lab.instruments == {}
    with pytest.raises(LoopThreadError, match="not running"):
        power.get()  # a parameter kept past close() says why instead of hanging
    # Closed means closed: the same names can be opened again in the same kernel.
    with open_station(_station_file(tmp_path)) as again:
        assert again["laser"].power_mw() == 1.0


async def test_a_run_timeout_ends_a_virtual_clock_run_in_wall_time(tmp_path: Path) -> None:
    with open_station(_station_file(tmp_path)) as lab:
        result = lab.run(rates, name="long", args={"n": 10**9}, timeout_s=1.0)
    assert result.status == "timeout" and "run timeout 1 s reached" in result.reason


def test_a_bad_station_file_leaves_no_loop_thread_behind(tmp_path: Path) -> None:
    import threading

    def loops() -> int:
        return sum(t.name == "labctl-loop" for t in threading.enumerate())

    bad = tmp_path / "bad.yaml"
    bad.write_text(STATION.replace("sims.twins:SimLaser", "sims.twins:NoSuchLaser"))
    before = loops()
    with pytest.raises(Exception, match="NoSuchLaser"):
        open_station(bad)
    assert loops() == before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_use_the_public_api_and_plot_inline(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for private in ("__aenter__", "__aexit__", "matplotlib.use(", "BackgroundLoop"):
        assert private not in code, f"{path.name} uses {private}"
    if "plt." in code:
        assert "%matplotlib inline" in code, path.name
    if "Station" in code or "station" in code:
        assert "open_station(" in code, path.name
