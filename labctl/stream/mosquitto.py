"""Run a private Mosquitto broker (tests, benchmarks, the keygen leak scan).

The broker listens on a free loopback port with persistence in its own folder, so it can be
SIGKILLed and started again on the same port with its sessions and queued messages intact.
Optional password file (made with ``mosquitto_passwd``) and TLS listener.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = os.environ.get("LABCTL_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``port``; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Server certificate material for a TLS listener."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False


class Mosquitto:
    """A mosquitto process owned by the caller; ``start``/``kill``/``stop`` as often as needed."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        stock: bool = False,
    ) -> None:
        """``stock``: Mosquitto's default settings (no persistence, Nagle on, default queue
        limits) with only the listener, anonymous access and the user set."""
        self.stock = stock
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.tls_port = (tls_port or free_port()) if tls is not None else None
        self.users = users
        self.process: subprocess.Popen[bytes] | None = None
        self.conf = self.folder / "mosquitto.conf"
        self._write_conf()

    def _write_conf(self) -> None:
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        # Started as root, mosquitto would switch to user "mosquitto", which cannot read
        # or write our (private) folder: stay whoever started it.
        lines = ["log_dest stderr", "log_type error", "log_type warning"]
        lines.append(f"user {getpass.getuser()}")
        if not self.stock:
            lines += [
                "persistence true",
                f"persistence_location {data}/",
                "autosave_interval 1",
                "max_queued_messages 1000000",
                "max_inflight_messages 0",
                "per_listener_settings false",
                "set_tcp_nodelay true",
            ]
        if self.users is not None:
            pwfile = self.folder / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                f"require_certificate {'true' if self.tls.require_client_cert else 'false'}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        """Plain-TCP broker URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        log_file = open(self.folder / "mosquitto.log", "ab")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=log_file, stderr=log_file
        )
        log_file.close()
        wait_port(self.port, timeout_s)
        if self.tls_port is not None:
            wait_port(self.tls_port, timeout_s)

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown: what persistence saved is all it keeps)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the broker (it saves its persistence file)."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
