"""Windows of cyclic convolutions of 0/1 vectors with real float64 FFTs (FFTW or numpy).

Privacy amplification on the FFT path (the fallback where the carry-less GF(2) product of
:mod:`labctl.qkd.privacy.toeplitz_gf2` is unavailable) spends almost all its time in three real FFTs
of the key length, so the backend matters: FFTW (through pyfftw, single thread,
FFTW_ESTIMATE plans kept per length with their aligned buffers) runs these transforms faster
than numpy's pocketfft (benchmarks/README.md); numpy is the exact fallback when
pyfftw is missing. Both return the same float64 values up to rounding far below 1/2, which
the caller checks before reducing to bits.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

Bits = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]
Spectra = npt.NDArray[np.complex128]

_PLANS_KEPT = 2
"""FFT lengths whose FFTW plans and buffers stay cached (24 bytes per point each)."""


class ConvolutionBackend(Protocol):
    """Computes a window of the cyclic convolution of two 0/1 vectors."""

    name: str

    def window(self, a: Bits, b: Bits, length: int, start: int, count: int) -> Floats:
        """(a (*) b)[start : start + count] for the cyclic convolution of ``length`` points."""
        ...

    def rfft_rows(self, rows: Floats) -> Spectra:
        """Real FFT of every row (rows of one length), as a new array."""
        ...

    def irfft_rows(self, spectra: Spectra, length: int) -> Floats:
        """Normalised inverse real FFT of every row to ``length`` points, as a new array."""
        ...


class NumpyBackend:
    """numpy.fft (pocketfft): always available."""

    name = "numpy"

    def window(self, a: Bits, b: Bits, length: int, start: int, count: int) -> Floats:
        """See :class:`ConvolutionBackend`."""
        spectrum = np.fft.rfft(a, length)
        spectrum *= np.fft.rfft(b, length)
        out: Floats = np.fft.irfft(spectrum, length)[start : start + count]
        return out

    def rfft_rows(self, rows: Floats) -> Spectra:
        """See :class:`ConvolutionBackend`."""
        return np.fft.rfft(rows, axis=-1)

    def irfft_rows(self, spectra: Spectra, length: int) -> Floats:
        """See :class:`ConvolutionBackend`."""
        return np.fft.irfft(spectra, length, axis=-1)


class _FftwPlan:
    """Aligned buffers and the three plans of one FFT length."""

    def __init__(self, pyfftw: Any, length: int) -> None:
        flags = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
        self.real = pyfftw.empty_aligned(length, dtype="float64")
        self.spec_a = pyfftw.empty_aligned(length // 2 + 1, dtype="complex128")
        self.spec_b = pyfftw.empty_aligned(length // 2 + 1, dtype="complex128")
        self.forward_a = pyfftw.FFTW(self.real, self.spec_a, flags=flags, threads=1)
        self.forward_b = pyfftw.FFTW(self.real, self.spec_b, flags=flags, threads=1)
        self.inverse = pyfftw.FFTW(
            self.spec_a, self.real, direction="FFTW_BACKWARD", flags=flags, threads=1
        )

    def load(self, bits: Bits) -> None:
        self.real[: bits.size] = bits
        self.real[bits.size :] = 0.0


_BATCH_ROWS = 8
"""Rows per batched FFTW plan in the block products (small transforms, one execute)."""


class _FftwRows:
    """A batched plan pair (forward and inverse) over up to _BATCH_ROWS rows of one length."""

    def __init__(self, pyfftw: Any, length: int) -> None:
        flags = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
        shape = (_BATCH_ROWS, length)
        self.real = pyfftw.empty_aligned(shape, dtype="float64")
        self.spec = pyfftw.empty_aligned((_BATCH_ROWS, length // 2 + 1), dtype="complex128")
        self.forward = pyfftw.FFTW(self.real, self.spec, axes=(-1,), flags=flags, threads=1)
        self.inverse = pyfftw.FFTW(
            self.spec, self.real, axes=(-1,), direction="FFTW_BACKWARD", flags=flags, threads=1
        )


_Plan = TypeVar("_Plan")


def _cached(plans: OrderedDict[int, _Plan], length: int, make: Callable[[], _Plan]) -> _Plan:
    """The plan of a length from a small LRU cache (the last _PLANS_KEPT lengths)."""
    plan = plans.get(length)
    if plan is None:
        plan = make()
        plans[length] = plan
        while len(plans) > _PLANS_KEPT:
            plans.popitem(last=False)
    plans.move_to_end(length)
    return plan


class FftwBackend:
    """FFTW through pyfftw; plans are cached per length and used under a lock."""

    name = "fftw"

    def __init__(self, pyfftw: Any) -> None:
        self._pyfftw = pyfftw
        self._plans: OrderedDict[int, _FftwPlan] = OrderedDict()
        self._row_plans: OrderedDict[int, _FftwRows] = OrderedDict()
        self._lock = threading.Lock()

    def _rows(self, length: int) -> _FftwRows:
        return _cached(self._row_plans, length, lambda: _FftwRows(self._pyfftw, length))

    def rfft_rows(self, rows: Floats) -> Spectra:
        """See :class:`ConvolutionBackend`."""
        count, length = rows.shape
        out = np.empty((count, length // 2 + 1), dtype=np.complex128)
        with self._lock:
            plan = self._rows(length)
            for r0 in range(0, count, _BATCH_ROWS):
                r1 = min(r0 + _BATCH_ROWS, count)
                plan.real[: r1 - r0] = rows[r0:r1]
                plan.real[r1 - r0 :] = 0.0
                plan.forward.execute()
                out[r0:r1] = plan.spec[: r1 - r0]
        return out

    def irfft_rows(self, spectra: Spectra, length: int) -> Floats:
        """See :class:`ConvolutionBackend`."""
        count = spectra.shape[0]
        out = np.empty((count, length), dtype=np.float64)
        with self._lock:
            plan = self._rows(length)
            for r0 in range(0, count, _BATCH_ROWS):
                r1 = min(r0 + _BATCH_ROWS, count)
                plan.spec[: r1 - r0] = spectra[r0:r1]
                plan.spec[r1 - r0 :] = 0.0
                plan.inverse.execute()  # unnormalised
                np.multiply(plan.real[: r1 - r0], 1.0 / length, out=out[r0:r1])
        return out

    def _plan(self, length: int) -> _FftwPlan:
        return _cached(self._plans, length, lambda: _FftwPlan(self._pyfftw, length))

    def window(self, a: Bits, b: Bits, length: int, start: int, count: int) -> Floats:
        """See :class:`ConvolutionBackend`."""
        with self._lock:
            plan = self._plan(length)
            plan.load(a)
            plan.forward_a.execute()
            plan.load(b)
            plan.forward_b.execute()
            np.multiply(plan.spec_a, plan.spec_b, out=plan.spec_a)
            plan.inverse.execute()  # unnormalised: scale the window only
            out: Floats = plan.real[start : start + count] * (1.0 / length)
        return out


_PYFFTW_OPTIONAL = ("dask", "scipy.fftpack")
"""Modules pyfftw imports for its interfaces to them, when they are installed."""


def _load_fftw() -> FftwBackend | None:
    # pyfftw's package import also loads its dask and scipy.fftpack interfaces whenever
    # those are installed (qcodes depends on dask; the test extras bring scipy): hundreds of
    # modules and about 20 MiB resident that FFTW plans never use. A None entry in sys.modules
    # makes such an optional import fail inside pyfftw (the documented way to block an
    # import); a module already imported is left as it is.
    blocked = [name for name in _PYFFTW_OPTIONAL if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import pyfftw  # type: ignore[import-untyped]
    except ImportError:  # optional accelerator: numpy.fft is the fallback
        return None
    finally:
        for name in blocked:
            del sys.modules[name]
    return FftwBackend(pyfftw)


_FFTW = _load_fftw()
_NUMPY = NumpyBackend()
BACKENDS: dict[str, ConvolutionBackend] = {"numpy": _NUMPY}
if _FFTW is not None:
    BACKENDS["fftw"] = _FFTW
DEFAULT_BACKEND: ConvolutionBackend = _FFTW if _FFTW is not None else _NUMPY


def backend(name: str | None) -> ConvolutionBackend:
    """The named backend ("fftw", "numpy"), or the fastest available when name is None."""
    if name is None:
        return DEFAULT_BACKEND
    try:
        return BACKENDS[name]
    except KeyError:
        have = sorted(BACKENDS)
        raise ValueError(f"FFT backend {name!r} is not available (have {have})") from None
