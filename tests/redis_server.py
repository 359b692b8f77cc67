"""A real Redis for tests: Debian's ``redis-server`` on a loopback port, nothing written to disk.

CI (``.ci/run``) starts one for the whole session and names it in ``MAP_AGENT_TEST_REDIS_URL``; elsewhere the
session fixture ``redis_url`` (``conftest.py``) starts its own. A test that stops the server mid-run starts a
private one, so it never takes the shared one away from the others.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from llama_server import free_port


class RedisServer:
    """``redis-server`` on 127.0.0.1 without persistence; ``url`` is its ``redis://`` URL (database 0)."""

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = log.open("w")
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.alive():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {log.read_text()[-1000:]}")
            time.sleep(0.05)

    def alive(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop at once (SIGKILL): to a client the server is simply gone, as after a crash or a lost host."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
