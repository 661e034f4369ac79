"""Run a blocking library (pyserial, pyvisa) off the event loop without wedging threads.

Each transport owns a one-thread executor, so calls to its library never overlap even
after an awaiting task was cancelled. Reads block at most one short slice at a time; the
async side loops over slices until its deadline, so a timeout or a cancellation returns
within a slice and never leaves a thread stuck in a read that waits forever.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from labctl.transport.core import BufferedTransport

T = TypeVar("T")

READ_SLICE_S = 0.05
"""Longest a worker thread blocks in one library read call."""

_CLOSE_WAIT_S = 1.0


class ThreadedTransport(BufferedTransport):
    """A BufferedTransport whose primitives are blocking calls run in its own thread."""

    _executor: ThreadPoolExecutor | None = None

    @abc.abstractmethod
    def _open_blocking(self) -> None:
        """Open the library handle (runs in the worker thread)."""

    @abc.abstractmethod
    def _close_blocking(self) -> None:
        """Close the library handle if any; must not raise (runs in the worker thread)."""

    @abc.abstractmethod
    def _write_blocking(self, data: bytes) -> None:
        """Write all of ``data`` (runs in the worker thread)."""

    @abc.abstractmethod
    def _read_slice(self, max_bytes: int, slice_s: float, stop_byte: int | None) -> bytes:
        """Return what arrives within ``slice_s`` (possibly nothing); raise on a broken link."""

    async def _call(self, func: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"labctl-transport-{self.instrument}"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    async def _connect(self) -> None:
        try:
            await self._call(self._open_blocking)
        except asyncio.CancelledError:
            # open() gave up (its deadline passed): the library call may still finish and
            # open the handle, so queue its close now rather than wait for it.
            self._detach()
            raise

    async def _disconnect(self) -> None:
        closing = self._detach()
        if closing is not None:
            # A call stuck in the library must not hold close() up for long; the queued
            # close still runs in the thread once that call returns.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(closing), _CLOSE_WAIT_S)

    def _detach(self) -> Future[None] | None:
        """Queue the handle's close behind any running call and retire the worker thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return None
        closing = executor.submit(self._close_blocking)
        executor.shutdown(wait=False)
        return closing

    async def _send(self, data: bytes) -> None:
        await self._call(self._write_blocking, data)

    async def _recv_some(self, max_bytes: int, timeout_s: float, stop_byte: int | None) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                raise TimeoutError
            chunk = await self._call(
                self._read_slice, max_bytes, min(READ_SLICE_S, remaining_s), stop_byte
            )
            if chunk:
                return chunk
