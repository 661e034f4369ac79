"""Async transports to instruments: TCP, serial, VISA and ZMQ, with timeouts and locks."""

from labctl.transport.base import Transport
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, BufferedTransport
from labctl.transport.factory import (
    check_zmq_address,
    make_subscriber,
    make_transport,
    parse_host_port,
)
from labctl.transport.recovery import ReconnectPolicy, discard_input, policy_of
from labctl.transport.serialport import SerialTransport
from labctl.transport.tcp import TcpTransport
from labctl.transport.visa import VisaTransport
from labctl.transport.zmq_req import ZmqTransport
from labctl.transport.zmq_sub import ZmqSubscriber

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "BufferedTransport",
    "ReconnectPolicy",
    "SerialTransport",
    "TcpTransport",
    "Transport",
    "VisaTransport",
    "ZmqSubscriber",
    "ZmqTransport",
    "check_zmq_address",
    "discard_input",
    "make_subscriber",
    "make_transport",
    "parse_host_port",
    "policy_of",
]
