"""configs/lab.yaml builds a station of the five real drivers (nothing is connected)."""

from __future__ import annotations

from pathlib import Path

from drivers.agiltron.ffswitch import FFSwitch
from drivers.idq.id1000 import ID1000
from drivers.ozoptics.epc400 import EPC400
from drivers.santec.tsl570 import TSL570
from drivers.singlequantum.eos import EosSNSPD
from labctl.station.loader import load_config
from labctl.station.station import Station

LAB_YAML = Path(__file__).resolve().parents[2] / "configs" / "lab.yaml"


def test_lab_yaml_builds_every_real_driver_unconnected() -> None:
    station = Station.from_config(load_config(LAB_YAML))
    kinds = {name: type(instrument) for name, instrument in station.instruments.items()}
    assert kinds == {
        "laser": TSL570,
        "pc-bob": EPC400,
        "detectors": EosSNSPD,
        "tagger-alice": ID1000,
        "tagger-bob": ID1000,
        "switch": FFSwitch,
    }
    laser = station.instruments["laser"]
    assert isinstance(laser, TSL570)
    assert laser.transport.resource == "TCPIP::192.168.1.20::5000::SOCKET"
    assert not laser.transport.is_open
    assert laser.remembered_settings == {
        "power_mw": 1.0,
        "wavelength_nm": 1550.0,
        "coherence_control": False,
    }
    tagger = station.instruments["tagger-bob"]
    assert isinstance(tagger, ID1000)
    assert tagger.remembered_settings["thresholds_mv[2]"] == -100.0
