"""Ctrl-C and SIGTERM for command-line runs: first = graceful abort, second = halt."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

from labctl.runner.control import RunControl

HANDLED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def abort_on_signals(control: RunControl) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM abort the run at its next checkpoint; a second one halts.

    Must run in the main thread's event loop (``labctl run``); notebooks keep their own
    interrupt handling and call ``control.abort()`` themselves.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in HANDLED:
        name = signum.name

        def handler(name: str = name) -> None:
            control.abort(f"{name} received")

        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
