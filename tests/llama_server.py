"""A real OpenAI-compatible server for tests: llama-cpp-python's own ``python -m llama_cpp.server`` serving the
shipped SmolLM2 GGUF on a loopback port, with its defaults (2,048-token context) but one thread (the CI machine's
two cores are shared).

The project did not write this server, so what it accepts, refuses or crashes on is what users meet. Tests get it
through the session fixtures ``llama_server`` and ``llama_server_lora`` (``conftest.py``), started once per
session and stopped at its end; ``LlamaServer.alive()`` tells whether a test left it standing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; ``url`` is its OpenAI base URL (``.../v1``)."""

    def __init__(self, log: Path, lora: Path | None = None, *extra: str) -> None:
        from map_agent.llm.backends import embedded_model_path

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = str(embedded_model_path())
        args = [sys.executable, "-m", "llama_cpp.server", "--model", self.model, "--host", "127.0.0.1",
                "--port", str(self.port), "--n_threads", "1", "--n_threads_batch", "1", *extra]
        if lora is not None:
            args += ["--lora_path", str(lora)]
        self.log = log
        self._log = log.open("w")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "OPENAI_API_KEY": ""})
        self._wait_ready()

    def _wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            if self.alive():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {seconds:g} s: {self.log.read_text()[-2000:]}")

    def alive(self) -> bool:
        """The process runs and answers ``/v1/models``."""
        if self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=10) as reply:
                return bool(json.load(reply).get("data"))
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
