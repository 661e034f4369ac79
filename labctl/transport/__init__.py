"""Async transports to instruments: TCP, serial, VISA and ZMQ, with timeouts and locks."""

from labctl.transport.base import Transport

__all__ = ["Transport"]
