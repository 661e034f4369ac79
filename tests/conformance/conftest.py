"""Parametrize the conformance suites over the implementation registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conformance.implementations import REGISTRY, Implementation


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


def _interface_fixture(interface: str) -> Any:
    """A fixture named ``interface`` yielding each registered implementation, connected."""

    @pytest.fixture(params=_params(interface), name=interface)
    async def fixture(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
        async with request.param.factory() as instrument:
            yield instrument

    return fixture


laser = _interface_fixture("laser")
polarization_controller = _interface_fixture("polarization_controller")
detector = _interface_fixture("detector")
time_tagger = _interface_fixture("time_tagger")
optical_switch = _interface_fixture("optical_switch")
transmitter = _interface_fixture("transmitter")
