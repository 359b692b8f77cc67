"""Run an untrusted Python script (a model's code) in a separate, limited process and read back one result.

The script runs in a fresh interpreter (``python -I``) inside a temporary working directory that is deleted
afterwards, in its own process group, with

* resource limits set before ``exec`` (``resource.setrlimit``): CPU seconds, address space, file size, no core
  dumps -- so a loop or a memory bomb ends in the kernel, not in the caller;
* a wall-clock timeout on the parent side that kills the whole process group (sleeping or blocked scripts);
* an audit hook (``sys.addaudithook``, installed before the script is compiled) that refuses every
  ``socket.*`` event, opening a file for writing or changing a path outside the working directory, starting
  processes, and loading native code through ``ctypes``. Refusals are recorded, so a script that catches the
  exception still fails.

This guards an evaluation against broken or careless code, not against a determined attacker in the same
interpreter (that would need an OS sandbox: containers, seccomp, network namespaces).

After the script, an ``epilogue`` runs in the script's namespace and must bind ``__result__``; the runner
writes it as JSON (numpy arrays become lists, dicts with non-string keys become ``{"__pairs__": [[key, value],
...]}``).

>>> run_script("x = 6 * 7", epilogue="__result__ = x").result
42
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "error", "timeout", "memory", "network", "filesystem", "process", "killed"]

_RUNNER = r'''
import json, os, sys, traceback
WORKDIR = os.path.realpath(os.getcwd())
VIOLATIONS = []
try:  # native libraries a numeric script is allowed to use are loaded before the hook forbids loading more
    import numpy  # noqa: F401
except ImportError:
    pass

class SandboxViolation(PermissionError):
    pass

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
               "os.chown", "os.truncate", "os.utime", "os.chdir", "os.chroot", "shutil.rmtree", "shutil.move",
               "shutil.copyfile", "shutil.copytree", "shutil.chown", "os.setxattr", "os.removexattr"}
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym",
                  "ctypes.call_function", "ctypes.cdata"}

def _inside(path):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == WORKDIR or real.startswith(WORKDIR + os.sep)

def _deny(kind, what):
    VIOLATIONS.append({"kind": kind, "what": what})
    raise SandboxViolation("sandbox: " + what + " is not allowed")

def _hook(event, args):
    if event.startswith("socket."):
        _deny("network", "network access (" + event + ")")
    elif event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if isinstance(path, int):
            return
        writing = (isinstance(mode, str) and any(ch in mode for ch in "wax+")) or \
                  (isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing and not _inside(path):
            _deny("filesystem", "writing " + repr(path) + " outside the working directory")
    elif event in PATH_EVENTS:
        for arg in args:
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                _deny("filesystem", event + " on " + repr(arg) + " outside the working directory")
    elif event in PROCESS_EVENTS:
        _deny("process", "starting processes or native code (" + event + ")")

def _plain(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x):
            return {k: _plain(v) for k, v in x.items()}
        return {"__pairs__": [[_plain(k), _plain(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x

def _main():
    code = open("script.py", encoding="utf-8").read()
    epilogue = open("epilogue.py", encoding="utf-8").read()
    sys.addaudithook(_hook)
    namespace = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    out = {"status": "ok"}
    try:
        try:
            exec(compile(code, "script.py", "exec"), namespace)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise
        exec(compile(epilogue, "epilogue.py", "exec"), namespace)
        out["result"] = _plain(namespace.get("__result__"))
    except MemoryError:
        out = {"status": "memory", "error": "MemoryError: the script exceeded the memory limit"}
    except BaseException as e:
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        out = {"status": "error", "error": (type(e).__name__ + ": " + str(e))[:2000],
               "traceback": "".join(tb[-6:])[-4000:]}
    if VIOLATIONS:
        first = VIOLATIONS[0]
        out = {"status": first["kind"], "error": "sandbox: " + first["what"] + " is not allowed"}
    out["violations"] = VIOLATIONS
    try:
        text = json.dumps(out)
    except (TypeError, ValueError) as e:
        text = json.dumps({"status": "error", "error": "__result__ is not JSON-serialisable: " + str(e),
                           "violations": VIOLATIONS})
    with open("result.json", "w", encoding="utf-8") as f:
        f.write(text)

_main()
'''


class SandboxLimits(BaseModel):
    """Limits of one run; the defaults fit a small numeric script (numpy import included)."""

    model_config = ConfigDict(frozen=True)

    wall_s: float = Field(default=20.0, gt=0, description="wall-clock seconds before the group is killed")
    cpu_s: int = Field(default=10, ge=1, description="RLIMIT_CPU: CPU seconds")
    memory_mb: int = Field(default=1024, ge=64, description="RLIMIT_AS: address space in MiB")
    file_mb: int = Field(default=16, ge=1, description="RLIMIT_FSIZE: largest file the script may write")
    output_chars: int = Field(default=20_000, ge=0, description="stdout/stderr kept in the result")


class SandboxResult(BaseModel):
    """What came back: a status, the epilogue's ``__result__`` when ``ok``, the error and captured output."""

    status: Status
    result: Any = None
    error: str = ""
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    violations: list[dict[str, str]] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _limit(limits: SandboxLimits):
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _tail(path: Path, limit: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - limit))
        return f.read().decode("utf-8", errors="replace")


def run_script(code: str, epilogue: str = "__result__ = None", limits: SandboxLimits | None = None,
               python: str | None = None) -> SandboxResult:
    """Run ``code`` then ``epilogue`` in a limited child interpreter; nothing the script does raises here."""
    limits = limits or SandboxLimits()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="map-agent-sandbox-") as tmp:
        work = Path(tmp)
        (work / "script.py").write_text(code, encoding="utf-8")
        (work / "epilogue.py").write_text(epilogue, encoding="utf-8")
        (work / "runner.py").write_text(_RUNNER, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        with (work / "stdout.txt").open("wb") as out, (work / "stderr.txt").open("wb") as err:
            proc = subprocess.Popen([python or sys.executable, "-I", "runner.py"], cwd=tmp, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    preexec_fn=_limit(limits))
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                proc.wait()
        stdout = _tail(work / "stdout.txt", limits.output_chars)
        stderr = _tail(work / "stderr.txt", limits.output_chars)
        seconds = time.perf_counter() - started
        base = {"stdout": stdout, "stderr": stderr, "seconds": seconds}
        if timed_out:
            return SandboxResult(status="timeout", error=f"wall-clock limit of {limits.wall_s:g} s exceeded",
                                 **base)
        report = work / "result.json"
        if proc.returncode == 0 and report.exists():
            try:
                data = json.loads(report.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                return SandboxResult(status="error", error=f"unreadable result: {e}", **base)
            return SandboxResult(status=data.get("status", "error"), result=data.get("result"),
                                 error=data.get("error", ""), traceback=data.get("traceback", ""),
                                 violations=data.get("violations", []), **base)
        return SandboxResult(**_signal_status(proc.returncode, limits, stderr), **base)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_status(returncode: int, limits: SandboxLimits, stderr: str) -> dict[str, str]:
    """Name the limit behind a child that died without writing its result."""
    if returncode == -signal.SIGXCPU:
        return {"status": "timeout", "error": f"CPU limit of {limits.cpu_s} s exceeded"}
    if returncode == -signal.SIGXFSZ:
        return {"status": "filesystem", "error": f"file size limit of {limits.file_mb} MiB exceeded"}
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return {"status": "memory", "error": f"memory limit of {limits.memory_mb} MiB exceeded"}
    if returncode < 0:
        return {"status": "killed", "error": f"killed by signal {signal.Signals(-returncode).name}"}
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
    return {"status": "error", "error": f"the interpreter stopped without a result: {last}"}
