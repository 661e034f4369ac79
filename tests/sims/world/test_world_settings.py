"""World settings: defaults, the GYS scenario, and clear errors for bad input."""

from __future__ import annotations

import pytest

from labctl.interfaces import ConfigError
from sims.world import World, parse_world_settings


def test_defaults_describe_a_25_km_smf28_link_with_snspds() -> None:
    settings = parse_world_settings(None)
    assert settings.fiber.length_km == 25.0 and settings.fiber.loss_db_per_km == 0.2
    assert settings.source.wavelength_nm == 1550.0 and settings.source.period_ps == 1000
    assert [c.name for c in settings.source.intensities] == ["signal", "decoy", "vacuum"]
    detector = settings.detectors[0]
    assert detector.efficiency == 0.8 and detector.dark_count_rate_hz == 100.0
    assert detector.dead_time_ns == 50.0 and detector.jitter_fwhm_ps == 30.0
    world = World(settings)
    assert world.truth.fiber_delay_ps == pytest.approx(25e3 * 1.4682 / 299_792_458 * 1e12, abs=1)


def test_the_gys_scenario_is_expressible() -> None:
    world = World.from_settings(
        {
            "fiber": {"length_km": 50.0, "loss_db_per_km": 0.21},
            "detectors": {"efficiency": 0.045, "dark_count_probability_per_pulse": 4.25e-7},
            "receiver": {"misalignment": 0.033, "optical_loss_db": 0.0},
            "switch": {"insertion_loss_db": 0.0},
        }
    )
    truth = world.truth
    assert sum(truth.dark_count_rate_hz) * 1e-9 == pytest.approx(1.7e-6)  # Y0 per pulse
    assert truth.transmittance == pytest.approx(10 ** (-50 * 0.21 / 10))
    assert truth.detector_efficiency == (0.045,) * 4


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"fibre": {}}, ["world.settings.fibre", "did you mean 'fiber'"]),
        ({"fiber": {"length": 3}}, ["world.settings.fiber.length", "'length_km'"]),
        ({"fiber": {"length_km": -1}}, ["fiber.length_km", "must be >= 0.0"]),
        ({"fiber": {"length_km": "far"}}, ["fiber.length_km", "expected a number"]),
        ({"source": {"rate_hz": 3.0e9}}, ["source.rate_hz", "whole number of ps"]),
        (
            {"source": {"intensities": {"signal": {"mu": 0.5, "probability": 0.5}}}},
            ["source.intensities", "sum to 1"],
        ),
        ({"detectors": {"overrides": {"Z2": {}}}}, ["detectors.overrides.Z2", "'Z1'"]),
        ({"detectors": {"overrides": {"X1": {"efficency": 1}}}}, ["X1.efficency"]),
        ({"taggers": {"bob": {"channel_delays_ps": [1, 2]}}}, ["bob.channel_delays_ps", "4"]),
        ({"taggers": {"bob": {"detector_channels": [0, 0, 1, 2]}}}, ["two detectors"]),
        ({"taggers": {"alice": {"detector_channels": [0, 1, 2, 3]}}}, ["not a setting of alice"]),
        ({"switch": {"bob_port": 5}}, ["switch.bob_port", "n_ports 4"]),
        ({"eve": {"blinding": "yes"}}, ["eve.blinding", "true or false"]),
        ({"polarization_controller": {"offset_rad": [0, 0]}}, ["offset_rad", "expected 4"]),
        ({"seed": 1.5}, ["world.settings.seed", "whole number"]),
        ([1, 2], ["world.settings", "mapping"]),
    ],
)
def test_bad_settings_name_what_and_where(settings: object, words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_world_settings(settings)  # type: ignore[arg-type]
    for word in words:
        assert word in str(error.value), str(error.value)


def test_per_detector_overrides_change_only_that_detector() -> None:
    settings = parse_world_settings(
        {"detectors": {"efficiency": 0.7, "overrides": {"X0": {"delay_ps": 250}}}}
    )
    assert [d.delay_ps for d in settings.detectors] == [0, 0, 250, 0]
    assert {d.efficiency for d in settings.detectors} == {0.7}
