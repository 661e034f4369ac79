"""Entry points: how labctl finds what experiments and sims add, without naming them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labctl import extensions
from labctl.cli.calibrate import names, plan_spec
from labctl.cli.overrides import settings_class
from labctl.interfaces.errors import ConfigError


def test_the_project_declares_its_plans_settings_and_wire_server() -> None:
    assert names() == [
        "all",
        "delays",
        "detectors",
        "mean_photon_number",
        "polarization",
        "switch",
    ]
    assert plan_spec("mean-photon-number").endswith(":plan_mean_photon_number")
    assert list(extensions.declared(extensions.COMMANDS)) == ["node"]
    assert list(extensions.declared(extensions.CONFIG_CHECKS)) == ["calibration"]
    server = extensions.load_module(extensions.WIRE_SERVERS, "twins")
    assert callable(server.WireTwins)
    qkd = settings_class("qkd")
    assert qkd is not None and qkd.__name__ == "KeygenSettings"
    assert settings_class("runner") is None  # its keys are those written in the file


def test_every_declared_entry_point_loads() -> None:
    groups = (
        extensions.COMMANDS,
        extensions.CALIBRATIONS,
        extensions.CONFIG_CHECKS,
        extensions.SETTINGS,
        extensions.WIRE_SERVERS,
    )
    for group in groups:
        for name, entry in extensions.declared(group).items():
            assert entry.load() is not None, f"{group} {name}"


def test_an_unknown_entry_names_the_group_and_what_is_installed() -> None:
    with pytest.raises(ConfigError, match=r"no labctl.calibrations entry point 'gains'.*all, "):
        extensions.spec(extensions.CALIBRATIONS, "gains")
    with pytest.raises(ConfigError, match="expected a module"):
        extensions.load_module(extensions.CALIBRATIONS, "all")
    with pytest.raises(ConfigError, match=r"unknown calibration 'gains'; known: all, delays"):
        plan_spec("gains")


def test_the_node_command_comes_from_an_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labctl", "node", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "--psk-file" in out.stdout
