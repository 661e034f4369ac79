"""Operator control of a running plan: pause, resume, abort, halt and named requests.

The CLI's signal handlers, the MQTT command listener and notebooks all drive a run through
this one object. Pause, abort and requests take effect at the plan's next checkpoint;
halt cancels the plan at once. Every method is safe to call from the run's event loop;
``threadsafe()`` wraps a call for other threads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from labctl.runner.status import RunState


class RunControl:
    """Commands queued for the running plan."""

    def __init__(self) -> None:
        self.state = RunState.PREPARING
        self.abort_reason: str | None = None
        self.halt_reason: str | None = None
        self.halt_status = "halted"
        self.stop_status = "aborted"
        self._resume_event = asyncio.Event()
        self._resume_event.set()
        self._requests: deque[str] = deque()
        self._halt_callbacks: list[Callable[[str], None]] = []
        self._state_listeners: list[Callable[[RunState], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop running the plan (for ``threadsafe``)."""
        self._loop = loop

    def on_halt(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when a halt is requested (the engine cancels the plan)."""
        self._halt_callbacks.append(callback)

    def on_state(self, listener: Callable[[RunState], None]) -> None:
        """Call ``listener(state)`` on every state change (MQTT ``$state``, progress)."""
        self._state_listeners.append(listener)

    def set_state(self, state: RunState) -> None:
        """Record a state change and tell the listeners."""
        if state is self.state:
            return
        self.state = state
        for listener in list(self._state_listeners):
            listener(state)

    @property
    def paused(self) -> bool:
        """True while a pause is requested and not yet resumed."""
        return not self._resume_event.is_set()

    def pause(self) -> None:
        """Hold the plan at its next checkpoint until ``resume()`` (or abort/halt)."""
        self._resume_event.clear()

    def resume(self) -> None:
        """Let a paused plan continue."""
        self._resume_event.set()

    def abort(self, reason: str, *, status: str = "aborted") -> None:
        """Stop the plan gracefully at its next checkpoint; a second abort halts at once."""
        if self.abort_reason is not None:
            self.halt(f"{reason} (second request: halting now)", status="halted")
            return
        self.abort_reason = reason
        self.stop_status = status
        self._resume_event.set()  # a paused plan must wake up to be aborted

    def halt(self, reason: str, *, status: str = "halted") -> None:
        """Stop the plan immediately (cancel it); cleanup and safe state still run."""
        if self.halt_reason is not None:
            return
        self.halt_reason = reason
        self.halt_status = status
        self._resume_event.set()
        for callback in list(self._halt_callbacks):
            callback(reason)

    def request(self, name: str) -> None:
        """Ask for a named action (e.g. ``"recalibrate"``) at the next checkpoint."""
        if not name:
            raise ValueError("request name must not be empty")
        self._requests.append(name)

    def take_requests(self) -> list[str]:
        """Pop every pending named request, oldest first."""
        taken = list(self._requests)
        self._requests.clear()
        return taken

    async def wait_resumed(self) -> None:
        """Return once the run is not paused."""
        await self._resume_event.wait()

    def threadsafe(self, method: Callable[..., None], *args: str) -> None:
        """Call ``method(*args)`` on the run's loop from any thread."""
        if self._loop is None:
            raise RuntimeError("RunControl is not bound to a running loop yet")
        self._loop.call_soon_threadsafe(method, *args)
