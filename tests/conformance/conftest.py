"""Make the implementation registry importable as ``implementations``; parametrize over it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from implementations import REGISTRY, Implementation  # noqa: E402


def _params(interface: str) -> list[Any]:
    return [pytest.param(impl, id=impl.name) for impl in REGISTRY[interface]]


def _all_params() -> list[Any]:
    return [
        pytest.param(impl, id=f"{interface}:{impl.name}")
        for interface, impls in REGISTRY.items()
        for impl in impls
    ]


@pytest.fixture(params=_all_params())
async def any_instrument(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered implementation of every interface, connected."""
    impl: Implementation = request.param
    async with impl.factory() as instrument:
        yield instrument


@pytest.fixture(params=_params("laser"))
async def laser(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered Laser, connected."""
    async with request.param.factory() as instrument:
        yield instrument


@pytest.fixture(params=_params("polarization_controller"))
async def polarization_controller(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered PolarizationController, connected."""
    async with request.param.factory() as instrument:
        yield instrument


@pytest.fixture(params=_params("detector"))
async def detector(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered SinglePhotonDetector, connected."""
    async with request.param.factory() as instrument:
        yield instrument


@pytest.fixture(params=_params("time_tagger"))
async def time_tagger(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered TimeTagger, connected."""
    async with request.param.factory() as instrument:
        yield instrument


@pytest.fixture(params=_params("optical_switch"))
async def optical_switch(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Every registered OpticalSwitch, connected."""
    async with request.param.factory() as instrument:
        yield instrument
