"""Hostile scripts against the OS sandbox: every case must be contained.

Each case is a script a careless or malicious model could write, with the check that it did not get out. Every
case is also checked for the escapes that matter whatever the script tried: no file appeared on the host, the
caller's secret (an environment variable and a file) appears nowhere in what came back, no connection reached a
server of the caller, no signal reached the caller, no process of the script outlived the run (each script names
its process (``prctl(PR_SET_NAME)``) first, and the host's ``/proc`` is searched for that name), and the run
ended within its wall-clock limit. The cases cover the 20 escapes the audit-hook sandbox let through (issue 9)
and more; ``CASES`` is the count reported as "contained / total".
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from map_agent.tools.sandbox import ENV, SandboxLimits, SandboxResult, isolation_problem, run_script

pytestmark = pytest.mark.skipif(isolation_problem() is not None, reason=f"no OS isolation: {isolation_problem()}")

LIMITS = SandboxLimits(wall_s=4, cpu_s=2, memory_mb=512, file_mb=4, disk_mb=8, output_chars=4000, result_mb=1)
SECRET = "s3cr3t-" + uuid.uuid4().hex
X86_64 = platform.machine() == "x86_64"
# syscall numbers for the ctypes cases (x86_64, aarch64)
NR = {"clone": (56, 220), "io_uring_setup": (425, 425), "unshare": (272, 97), "ptrace": (101, 117)}
ARCH = 0 if X86_64 else 1


@dataclass
class Context:
    outside: Path  # a host directory the script is told about
    secret_file: Path
    port: int
    connections: list = field(default_factory=list)
    signals: list = field(default_factory=list)
    marker: str = ""
    name: str = ""  # what the script writes to /proc/self/comm


@dataclass
class Case:
    name: str
    code: str
    check: Callable[[SandboxResult, Context], None] = lambda run, ctx: None
    epilogue: str = "__result__ = None"
    only_x86_64: bool = False


def status(*allowed: str) -> Callable[[SandboxResult, Context], None]:
    def check(run: SandboxResult, ctx: Context) -> None:
        assert run.status in allowed, (run.status, run.error)
    return check


def result(expected) -> Callable[[SandboxResult, Context], None]:
    def check(run: SandboxResult, ctx: Context) -> None:
        assert run.ok and run.result == expected, (run.status, run.error, run.result)
    return check


#: x86_64: loop rdi times {clone(CLONE_VM|FS|FILES|SIGHAND|THREAD, stack 0); child: for (;;) pause();} and
#: return how many clones succeeded (stops at the first failure)
STUB_CLONES = [83, 65, 84, 72, 137, 251, 69, 49, 228, 72, 133, 219, 116, 46, 72, 255, 203, 184, 56, 0, 0, 0, 191, 0,
               15, 1, 0, 49, 246, 49, 210, 69, 49, 210, 69, 49, 192, 15, 5, 72, 133, 192, 116, 7, 120, 14, 73, 255,
               196, 235, 214, 184, 34, 0, 0, 0, 15, 5, 235, 247, 76, 137, 224, 65, 92, 91, 195]


def forked_nowhere(run: SandboxResult, ctx: Context) -> None:
    """The fork was denied, or (as root, where only the filter counts tasks) the thread itself was."""
    assert (run.ok and run.result == ["denied"]) or "can't start new thread" in run.error, (run.status, run.error)


def tasks_counted(run: SandboxResult) -> None:
    """At most ``LIMITS.tasks`` tasks came to be (the runner counts as one)."""
    assert run.status in ("ok", "error"), (run.status, run.error)
    assert run.result is None or run.result < LIMITS.tasks, run.result


def denied(run: SandboxResult, ctx: Context) -> None:
    assert run.status == "denied" and "Operation not permitted" in run.error, (run.status, run.error)


def nonzero(run: SandboxResult, ctx: Context) -> None:
    assert run.ok and run.result != 0, (run.status, run.error, run.result)


def host_usr_untouched(run: SandboxResult, ctx: Context) -> None:
    assert not (Path("/usr") / ctx.marker).exists()
    assert run.status in ("denied", "error"), (run.status, run.error)


def inodes_capped(run: SandboxResult, ctx: Context) -> None:
    """The script met ENOSPC before it made more entries than the tmpfs has inodes (its root takes one)."""
    assert run.ok and run.result[0] == 28 and 0 < run.result[1] < LIMITS.inodes, (run.status, run.error, run.result)


# ctypes helpers pasted into scripts
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"

CASES = [
    # --- processes: none can be started, by any route --------------------------------------------------------
    Case("os.fork", "import os\nos.fork()", denied),
    Case("fork bomb", "import os\nn = 0\nfor _ in range(2000):\n    try:\n        os.fork()\n        n += 1\n"
                      "    except OSError:\n        pass", result(0), "__result__ = n"),
    Case("os.system", "import os\nrc = os.system('touch @OUTSIDE@/system; sleep 100')", nonzero, "__result__ = rc"),
    Case("subprocess.run", "import subprocess\nsubprocess.run(['touch', '@OUTSIDE@/sub'])", denied),
    Case("subprocess shell daemon", "import subprocess\nsubprocess.Popen('sleep 100 &', shell=True)", denied),
    Case("multiprocessing.util.spawnv_passfds",
         "import os, sys\nfrom multiprocessing.util import spawnv_passfds\npy = os.fsencode(sys.executable)\n"
         "spawnv_passfds(py, [py, b'-c', b'import time; time.sleep(100)'], [])", denied),
    Case("multiprocessing.Process", "import multiprocessing as mp, time\np = mp.Process(target=time.sleep, "
                                    "args=(100,))\np.start()", status("denied", "error")),
    Case("os.posix_spawn", "import os\nos.posix_spawn('/usr/bin/sleep', ['sleep', '100'], {})", denied),
    Case("os.execv", "import os\nos.execv('/usr/bin/touch', ['touch', '@OUTSIDE@/exec'])", denied),
    Case("memfd exec", "import os\nfd = os.memfd_create('x')\nos.write(fd, open('/usr/bin/true', 'rb').read())\n"
                       "os.execve(fd, ['x'], {})", denied),
    Case("pty.spawn", "import pty\npty.spawn(['true'])", status("denied", "error")),
    Case("ctypes fork", LIBC + "pid = libc.fork()", result(-1), "__result__ = pid"),
    Case("ctypes vfork", LIBC + "pid = libc.vfork()", result(-1), "__result__ = pid"),
    Case("raw clone syscall", LIBC + f"pid = libc.syscall({NR['clone'][ARCH]}, 17, 0, 0, 0, 0)", result(-1),
         "__result__ = pid"),
    Case("setsid daemon", "import os\nos.setsid()", denied),
    Case("double-fork daemon", "import os\ntry:\n    if os.fork() == 0:\n        os.setsid()\n"
                               "        import time; time.sleep(100)\nexcept OSError as e:\n    err = e.errno",
         result(1), "__result__ = err"),
    Case("fork from a thread", "import os, threading\nout = []\ndef go():\n    try:\n        os.fork()\n"
                               "        out.append('forked')\n    except OSError:\n        out.append('denied')\n"
                               "t = threading.Thread(target=go)\nt.start()\nt.join()", forked_nowhere,
         "__result__ = out"),
    Case("i386 int 0x80 fork", "import ctypes, mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | "
                               "mmap.PROT_WRITE | mmap.PROT_EXEC)\nm.write(bytes([0xb8, 2, 0, 0, 0, 0xcd, 0x80, "
                               "0xc3]))\nf = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char."
                               "from_buffer(m)))\npid = f()", status("killed"), "__result__ = pid",
         only_x86_64=True),
    Case("x32 fork syscall", LIBC + "pid = libc.syscall(0x40000000 | 57)", status("killed"), "__result__ = pid",
         only_x86_64=True),
    Case("io_uring", LIBC + f"fd = libc.syscall({NR['io_uring_setup'][ARCH]}, 8, ctypes.create_string_buffer(120))",
         result(-1), "__result__ = fd"),
    Case("unshare user namespace", LIBC + f"rc = libc.syscall({NR['unshare'][ARCH]}, 0x10000000)", result(-1),
         "__result__ = rc"),
    Case("ptrace pid 1", LIBC + f"rc = libc.syscall({NR['ptrace'][ARCH]}, 16, 1, 0, 0)", result(-1),
         "__result__ = rc"),
    Case("chroot", "import os\nos.chroot('.')", denied),
    # --- network: no socket, and no interface to reach the caller's --------------------------------------------
    Case("tcp to a caller's server", "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=1)",
         denied),
    Case("urllib to a caller's server", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:@PORT@/',"
                                        " timeout=1)", status("denied", "error")),
    Case("udp sendto", "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
                       "('127.0.0.1', @PORT@))", denied),
    Case("unix socket", "import socket\nsocket.socket(socket.AF_UNIX).connect('/run/systemd/private')", denied),
    Case("socketpair", "import socket\nsocket.socketpair()", denied),
    Case("raw packet socket", "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)", denied),
    Case("ctypes socket", LIBC + "fd = libc.socket(2, 1, 0)", result(-1), "__result__ = fd"),
    Case("list interfaces", "import socket\nnames = socket.if_nameindex()", status("denied", "error"),
         "__result__ = names"),
    # --- file system: writes only in the fresh tmpfs --------------------------------------------------------------
    Case("write to a host path", "open('@OUTSIDE@/x', 'w').write('pwned')", status("denied", "error")),
    Case("write under /usr", "open('/usr/@MARKER@', 'w').write('pwned')", host_usr_untouched),
    Case("write to /", "open('/@MARKER@', 'w')", status("denied")),
    Case("write to /dev/shm", "open('/dev/shm/@MARKER@', 'w')", status("denied")),
    Case("append to the venv", "import os, sys\nopen(os.path.join(sys.prefix, 'pyvenv.cfg'), 'ab')",
         status("denied", "error")),
    Case("dir_fd create", "import os\nd = os.open('/usr', os.O_RDONLY | os.O_DIRECTORY)\n"
                          "os.open('@MARKER@', os.O_CREAT | os.O_WRONLY, dir_fd=d)", host_usr_untouched),
    Case("dir_fd rename out", "import os\nopen('a', 'w').write('x')\nd = os.open('/usr', os.O_RDONLY | "
                              "os.O_DIRECTORY)\nos.rename('a', '@MARKER@', dst_dir_fd=d)", host_usr_untouched),
    Case("dir_fd link out", "import os\nopen('a', 'w').write('x')\nd = os.open('/usr', os.O_RDONLY | "
                            "os.O_DIRECTORY)\nos.link('a', '@MARKER@', dst_dir_fd=d)", host_usr_untouched),
    Case("dir_fd unlink", "import os\nd = os.open('/usr/bin', os.O_RDONLY | os.O_DIRECTORY)\n"
                          "os.unlink('true', dir_fd=d)", status("denied")),
    Case("symlink then write", "import os\nos.symlink('/usr', 'link')\nopen('link/@MARKER@', 'w')",
         host_usr_untouched),
    Case("hard link to a system file", "import os\nos.link('/usr/bin/true', 'true')", status("error", "denied")),
    Case("directory-swap race", "import os, threading\nos.mkdir('real')\nstop = []\ndef swap():\n"
                                "    while not stop:\n        try:\n            os.rename('d', 'gone')\n"
                                "            os.symlink('/usr', 'd')\n            os.unlink('d')\n"
                                "            os.rename('gone', 'd')\n        except OSError:\n            pass\n"
                                "os.rename('real', 'd')\nt = threading.Thread(target=swap)\nt.start()\nwins = 0\n"
                                "for _ in range(3000):\n    try:\n        open('d/@MARKER@', 'w').close()\n"
                                "        wins += 1\n    except OSError:\n        pass\nstop.append(1)\nt.join()",
         lambda run, ctx: None if (run.ok or "can't start new thread" in run.error)
         and not (Path("/usr") / ctx.marker).exists() else
         pytest.fail(f"{run.status} {run.error}")),
    Case("chmod a system file", "import os\nos.chmod('/usr/bin/true', 0o777)", status("denied")),
    Case("mkfifo under /usr", "import os\nos.mkfifo('/usr/@MARKER@')", host_usr_untouched),
    Case("hostname (the sandbox's own uts namespace)", "open('/proc/sys/kernel/hostname', 'w').write('pwned')",
         lambda run, ctx: None if socket.gethostname() != "pwned" else pytest.fail("host renamed")),
    Case("global sysctl write", "open('/proc/sys/vm/drop_caches', 'w').write('1')", status("denied")),
    # the sandbox user is the host's root to file checks when the caller is root: Landlock must stop this one
    Case("host core_pattern (same value)", "p = '/proc/sys/kernel/core_pattern'\nopen(p, 'w').write('@CORE@')",
         status("denied")),
    Case("host modprobe path (same value)", "p = '/proc/sys/kernel/modprobe'\nopen(p, 'w').write('@MODPROBE@')",
         status("denied", "error")),
    Case("chdir up and write", "import os\nos.chdir('..')\nos.chdir('..')\nopen('@MARKER@', 'w')",
         status("denied")),
    # --- disk: the total is capped, not only each file ------------------------------------------------------------
    Case("one file past RLIMIT_FSIZE", "open('big', 'wb').write(b'x' * (8 << 20))", status("disk")),
    Case("many files past the tmpfs", "total = 0\ntry:\n    for i in range(100):\n        with open(f'f{i}', 'wb')"
                                      " as f:\n            f.write(b'x' * (3 << 20))\n        total += 3 << 20\n"
                                      "except OSError as e:\n    err = e.errno",
         lambda run, ctx: None if run.ok and run.result[0] == 28 and run.result[1] <= 8 << 20 else
         pytest.fail(f"{run.status} {run.result}"), "__result__ = [err, total]"),
    Case("many small files", "import os\nn = 0\ntry:\n    for i in range(20000):\n        with open(f's{i}', 'wb')"
                             " as f:\n            f.write(b'x' * 4096)\n        n += 1\nexcept OSError as e:\n"
                             "    err = e.errno", lambda run, ctx: None if run.ok and run.result[0] == 28 and
         0 < run.result[1] * 4096 <= 8 << 20 else pytest.fail(f"{run.status} {run.result}"), "__result__ = [err, n]"),
    # empty files take no space: only the tmpfs's inode cap stops them (issue 16)
    Case("200,000 empty files", "n = 0\ntry:\n    for i in range(200_000):\n        open(f'e{i}', 'w').close()\n"
                                "        n += 1\nexcept OSError as e:\n    err = e.errno", inodes_capped,
         "__result__ = [err, n]"),
    Case("directories and symlinks", "import os\nn = 0\ntry:\n    for i in range(200_000):\n"
                                     "        os.mkdir(f'd{i}') if i % 2 else os.symlink('/usr', f'l{i}')\n"
                                     "        n += 1\nexcept OSError as e:\n    err = e.errno", inodes_capped,
         "__result__ = [err, n]"),
    Case("capabilities after the inode cap's mount", LIBC + "class Header(ctypes.Structure):\n"
         "    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]\nsets = (ctypes.c_uint32 * 6)()\n"
         "libc.capget(ctypes.byref(Header(0x20080522, 0)), sets)\n"
         "bounding = [c for c in range(64) if libc.prctl(23, c, 0, 0, 0) == 1]\n"
         "unmounted = libc.umount2(b'/sandbox', 2)", result([[0] * 6, [], -1]),
         "__result__ = [list(sets), bounding, unmounted]"),
    # --- secrets: no view of the caller's environment, files or /proc ---------------------------------------------
    Case("os.environ", "import os\nenv = sorted(os.environ)", lambda run, ctx: None if run.ok and
         set(run.result) <= set(ENV) | {"PWD", "LC_CTYPE"} else pytest.fail(str(run.result)), "__result__ = env"),
    Case("every /proc/*/environ and cmdline", "import os\nseen = []\nfor pid in os.listdir('/proc'):\n"
                                               "    for part in ('environ', 'cmdline'):\n        try:\n"
                                               "            seen.append(open(f'/proc/{pid}/{part}', 'rb').read()"
                                               ".decode(errors='replace'))\n        except OSError:\n"
                                               "            pass\nprint(seen)", status("ok", "denied")),
    Case("caller's /proc/<pid>/environ", "text = open('/proc/@PID@/environ').read()", status("error", "denied")),
    Case("list processes", "import os\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())",
         status("denied"), "__result__ = pids"),
    Case("the repository around the venv", "import os, sys\nnext_to = os.listdir(os.path.dirname(sys.prefix))",
         lambda run, ctx: None if run.status == "denied" or run.result == [os.path.basename(sys.prefix)] else
         pytest.fail(str(run.result)), "__result__ = next_to"),
    Case("host secret file", "print(open('@SECRET_FILE@').read())", status("error")),
    Case("~/.ssh", "import os, glob\nfound = glob.glob(os.path.expanduser('~/.ssh/*')) + glob.glob('@HOME@/.ssh/*')"
                   " + glob.glob('/root/.ssh/*') + glob.glob('/home/*/.ssh/*')", result([]), "__result__ = found"),
    Case("/etc", "import os\nthere = os.path.exists('/etc/passwd') or os.path.exists('/etc/shadow')", result(False),
         "__result__ = there"),
    Case("top-level view", "import os\ntop = sorted(os.listdir('/'))",
         lambda run, ctx: None if run.status == "denied" or not {"etc", "home", "tmp", "var", "run"} & set(run.result)
         else pytest.fail(str(run.result)),
         "__result__ = top"),
    Case("inherited descriptors", "import os\nfds = []\nfor fd in range(1024):\n    try:\n        os.fstat(fd)\n"
                                  "        fds.append(fd)\n    except OSError:\n        pass",
         lambda run, ctx: None if run.ok and len(run.result) <= 4 else pytest.fail(str(run.result)),
         "__result__ = fds"),
    Case("/proc/1/root", "import os\nentries = sorted(os.listdir('/proc/1/root'))", lambda run, ctx: None if
         "etc" not in (run.result or []) else pytest.fail(str(run.result)), "__result__ = entries"),
    # --- the result channel: nothing the script does can hang, crash or fool the caller ---------------------------
    Case("FIFO as result.json and stdout.txt", "import os\nos.mkfifo('result.json')\nos.mkfifo('stdout.txt')\nx = 1",
         result(1), "__result__ = x"),
    Case("symlinks to /dev/zero and outside", "import os\nos.symlink('/dev/zero', 'result.json')\n"
                                              "os.symlink('@OUTSIDE@/x', 'stdout.txt')\nx = 1", result(1),
         "__result__ = x"),
    Case("stdout redirected to a FIFO", "import os\nos.mkfifo('p')\nfd = os.open('p', os.O_RDWR)\nos.dup2(fd, 1)\n"
                                        "print('x' * 100000, flush=True)", status("timeout", "ok", "error")),
    Case("channel replaced by /dev/zero", "import os, sys\nos.dup2(os.open('/dev/zero', os.O_RDONLY), "
                                          "int(sys.argv[1]))", status("error")),
    Case("channel flood", "import os, sys\nfd = int(sys.argv[1])\nwhile True:\n    os.write(fd, b'x' * 65536)",
         lambda run, ctx: None if run.status == "output" and run.seconds < 3 else pytest.fail(run.status)),
    Case("stdout flood", "import sys\nfor _ in range(500):\n    sys.stdout.write('x' * 100000)",
         lambda run, ctx: None if run.ok and len(run.stdout) <= LIMITS.output_chars else pytest.fail(run.status)),
    Case("endless stdout", "import sys\nwhile True:\n    sys.stdout.write('y' * 100000)",
         lambda run, ctx: None if run.status == "timeout" and len(run.stdout) <= LIMITS.output_chars else
         pytest.fail(run.status)),
    Case("forged report with caller-owned fields",
         "import os, sys\nos.write(int(sys.argv[1]), b'{\"status\": \"timeout\", \"isolation\": \"weak\", "
         "\"seconds\": 0}')\nos._exit(0)",
         lambda run, ctx: None if run.status == "error" and run.isolation == "os" and run.seconds > 0 else
         pytest.fail(run.status)),
    Case("forged report before the real one", "import os, sys\nos.write(int(sys.argv[1]), b'{\"status\": \"ok\", "
                                              "\"result\": 42}')\nx = 1", status("error"), "__result__ = x"),
    Case("non-UTF-8 on the channel", "import os, sys\nos.write(int(sys.argv[1]), b'\\xff\\xfe')\nos._exit(0)",
         status("error")),
    Case("nested JSON bomb on the channel", "import os, sys\nos.write(int(sys.argv[1]), b'[' * 200000)\n"
                                            "os._exit(0)", status("error")),
    Case("deep result", "x = []\nfor _ in range(100000):\n    x = [x]", status("error"), "__result__ = x"),
    Case("huge int result", "x = 10 ** 5000", status("error"), "__result__ = x"),
    Case("channel closed early", "import os, sys\nos.close(int(sys.argv[1]))\nx = 1", status("error"),
         "__result__ = x"),
    Case("stdout closed, then sleep", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(100)",
         status("timeout")),
    # --- the old audit hook's weak spots: there is no hook to disable ---------------------------------------------
    Case("rebind __main__ names, then fork", "import __main__, os\nfor k in list(vars(__main__)):\n"
                                             "    if not k.startswith('__'):\n        setattr(__main__, k, None)\n"
                                             "try:\n    os.fork()\n    os.write(1, b'forked')\nexcept OSError:\n"
                                             "    os.write(1, b'denied')",
         lambda run, ctx: None if "denied" in run.stdout and "forked" not in run.stdout else
         pytest.fail(run.stdout)),
    Case("clear containers via gc, then fork", "import gc, os\nfor o in gc.get_objects():\n"
                                               "    if isinstance(o, (set, list)) and len(o) < 64 and o is not "
                                               "gc.garbage:\n        try:\n            o.clear()\n"
                                               "        except Exception:\n            pass\ntry:\n    os.fork()\n"
                                               "    os.write(1, b'forked')\nexcept OSError:\n"
                                               "    os.write(1, b'denied')",
         lambda run, ctx: None if "forked" not in run.stdout else pytest.fail(run.stdout)),
    Case("unload the seccomp filter", LIBC + "libc.prctl(22, 0, 0, 0, 0)\npid = os.fork()", denied),
    Case("raise the CPU limit", "import resource\ntry:\n    resource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\n"
                                "except ValueError:\n    pass\nwhile True:\n    pass", status("timeout", "killed")),
    Case("ignore SIGXCPU", "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass",
         status("timeout", "killed")),
    Case("setuid root", "import os\nos.setuid(0)", status("error", "denied")),
    # --- signals: none reaches the caller ---------------------------------------------------------------------------
    Case("signal the caller", "import os, signal\nos.kill(@PID@, signal.SIGUSR1)", status("error", "denied")),
    Case("signal everyone", "import os, signal\nos.kill(-1, signal.SIGUSR1)\nos.kill(-1, signal.SIGKILL)",
         status("ok", "error", "killed", "denied")),
    Case("signal the process group", "import os, signal\nos.killpg(0, signal.SIGUSR1)",
         status("ok", "error", "killed", "denied")),
    Case("kill the sandbox init", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, 9)",
         status("ok", "error", "killed", "denied")),
    # --- resources ------------------------------------------------------------------------------------------------
    Case("infinite loop", "while True:\n    pass", status("timeout")),
    Case("sleep", "import time\ntime.sleep(100)", status("timeout")),
    Case("memory bomb", "x = bytearray(10 ** 11)", status("memory")),
    # memory outside the address space that RLIMIT_AS bounds (issue 16)
    Case("SysV shared memory segment", LIBC + "libc.shmget.restype = ctypes.c_int\n"
                                            "shm = libc.shmget(0, ctypes.c_size_t(1 << 28), 0o1600)", result(-1),
         "__result__ = shm"),
    Case("SysV message queue", LIBC + "queue = libc.msgget(0, 0o1600)", result(-1), "__result__ = queue"),
    Case("memfd filled with write()", "import os\nfd = os.memfd_create('fill')\nblock = b'x' * 2 ** 20\n"
                                      "for _ in range(3000):\n    os.write(fd, block)", denied),
    Case("a thread left running", "import threading, time\nthreading.Thread(target=time.sleep, args=(100,)).start()"
                                  "\nx = 1",
         lambda run, ctx: None if (run.ok or "can't start new thread" in run.error) and run.seconds < 3 else
         pytest.fail(run.status), "__result__ = x"),
    Case("stack overflow", "import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1)\nf(0)",
         status("killed", "error", "memory", "timeout")),
    Case("abort", "import os\nos.abort()", status("killed")),
    Case("segfault", "import ctypes\nctypes.string_at(0)", status("killed")),
    Case("descriptor exhaustion", "fs = [open('/dev/null') for _ in range(100000)]", status("error")),
    # a machine-code loop of raw clone(CLONE_VM | CLONE_THREAD ...) whose children park in pause() on no stack:
    # no Python thread object, no arena, so only a task count (RLIMIT_NPROC in the sandbox's user namespace, or
    # the filter's no-clone rule where that cannot count) stops it; it made 4,000 tasks before
    Case("4000 raw thread clones", "import ctypes, mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | "
                                   "mmap.PROT_WRITE | mmap.PROT_EXEC)\nm.write(bytes(" + repr(STUB_CLONES) + "))\n"
                                   "f = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)(ctypes.addressof(ctypes."
                                   "c_char.from_buffer(m)))\nn = f(4000)", lambda run, ctx: tasks_counted(run),
         "__result__ = n", only_x86_64=True),
    Case("threads in a loop", "import threading, time\nn = 0\ntry:\n    for _ in range(4000):\n"
                              "        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
                              "        n += 1\nexcept RuntimeError:\n    pass", lambda run, ctx: tasks_counted(run),
         "__result__ = n"),
]


@pytest.fixture(scope="module")
def server():
    """A TCP server of the caller's that records every connection."""
    connections: list = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                connections.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], connections
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def ctx(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MAP_AGENT_TEST_SECRET", SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    port, connections = server
    received: list = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    marker = f"map-agent-escape-{uuid.uuid4().hex}"
    yield Context(outside, secret_file, port, connections, received, marker, "esc" + uuid.uuid4().hex[:12])
    signal.signal(signal.SIGUSR1, previous)


def _sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return ""


def _survivors(name: str) -> list[int]:
    """Live host processes named ``name`` (zombies are dead)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm == name and state != "Z":
            found.append(int(pid))
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_script_is_contained(case: Case, ctx: Context):
    if case.only_x86_64 and not X86_64:
        pytest.skip("x86_64 machine code")
    code = (case.code.replace("@OUTSIDE@", str(ctx.outside)).replace("@SECRET_FILE@", str(ctx.secret_file))
            .replace("@PORT@", str(ctx.port)).replace("@PID@", str(os.getpid())).replace("@MARKER@", ctx.marker)
            .replace("@HOME@", str(Path.home())).replace("@CORE@", _sysctl("kernel/core_pattern"))
            .replace("@MODPROBE@", _sysctl("kernel/modprobe")))
    named = f"import ctypes as _c\n_c.CDLL(None).prctl(15, {ctx.name.encode()!r}, 0, 0, 0)\n{code}"
    connections_before = len(ctx.connections)
    run = run_script(named, case.epilogue, LIMITS)

    case.check(run, ctx)
    assert run.seconds < LIMITS.wall_s + 3
    assert list(ctx.outside.iterdir()) == []
    assert not (Path("/usr") / ctx.marker).exists() and not (Path(sys.prefix) / ctx.marker).exists()
    shown = run.model_dump_json()
    assert SECRET not in shown
    time.sleep(0.05)
    assert len(ctx.connections) == connections_before
    assert ctx.signals == []
    deadline = time.monotonic() + 2
    while _survivors(ctx.name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _survivors(ctx.name) == []


def test_the_suite_covers_every_escape_of_the_audit_hook_sandbox():
    names = {c.name for c in CASES}
    escapes = {"multiprocessing.util.spawnv_passfds", "double-fork daemon", "dir_fd create", "dir_fd rename out",
               "dir_fd link out", "directory-swap race", "rebind __main__ names, then fork",
               "clear containers via gc, then fork", "forged report with caller-owned fields",
               "FIFO as result.json and stdout.txt", "symlinks to /dev/zero and outside",
               "caller's /proc/<pid>/environ", "many files past the tmpfs"}
    assert escapes <= names and len(CASES) >= 80


def _landlock_abi() -> int:
    import ctypes

    return ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1)


WEAK_CASES = {
    "fork": "import os\nos.fork()",
    "socket": "import socket\nsocket.socket()",
    "write outside": "open('@OUTSIDE@/x', 'w')",
    "read the caller's secret file": "print(open('@SECRET_FILE@').read())",
    "read the caller's environ": "print(open('/proc/@PID@/environ').read())",
    "signal the caller": "import os, signal\nos.kill(@PID@, signal.SIGUSR1)",
}


def _without(monkeypatch, layer: str) -> None:
    """Simulate a kernel that lacks ``layer``: the probe says so, and isolation_problem() follows it."""
    from map_agent.tools import sandbox

    probed = dict(sandbox.probe_layers(), **{layer: f"{layer} switched off for this test"})
    monkeypatch.setattr(sandbox, "probe_layers", lambda: probed)
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: f"{layer} switched off for this test")


def test_the_weak_mode_drops_only_the_missing_layer(ctx, monkeypatch):
    """As root with only Landlock missing, --unsafe-sandbox used to drop every namespace: model code wrote and
    deleted host files. It now keeps namespaces and seccomp, and its warning names the layers that remain."""
    _without(monkeypatch, "landlock")
    victim = ctx.outside.parent / "keep.txt"
    victim.write_text("data")
    acts = f"lambda: open({str(ctx.outside / 'x')!r}, 'w'), lambda: os.remove({str(victim)!r})"
    code = (f"import os\nfor act in ({acts}):"
            "\n    try:\n        act()\n    except OSError:\n        pass\nimport socket\nsocket.socket()")
    with pytest.warns(RuntimeWarning) as warned:
        run = run_script(code, limits=LIMITS.model_copy(update={"allow_weak_isolation": True}))
    line = str(warned[0].message)
    assert "active layers: namespaces, inode cap, seccomp, rlimits; missing: landlock" in line and "\n" not in line
    assert run.isolation == "weak" and run.status == "denied", (run.status, run.error)
    assert list(ctx.outside.iterdir()) == [] and victim.read_text() == "data"


def test_without_the_inode_cap_the_weak_mode_says_so_and_keeps_the_size_cap(ctx, monkeypatch):
    """A kernel that refuses the inode-capped mount: the run keeps bwrap's tmpfs, capped in size only."""
    _without(monkeypatch, "inode cap")
    code = ("n = 0\ntry:\n    for i in range(100):\n        with open(f'f{i}', 'wb') as f:\n"
            "            f.write(b'x' * (2 << 20))\n        n += 1\nexcept OSError as e:\n    err = e.errno")
    with pytest.warns(RuntimeWarning) as warned:
        run = run_script(code, "__result__ = [err, n]", LIMITS.model_copy(update={"allow_weak_isolation": True}))
    assert "missing: inode cap" in str(warned[0].message)
    assert run.isolation == "weak" and run.ok and run.result[0] == 28 and run.result[1] * 2 <= LIMITS.disk_mb, \
        (run.status, run.error, run.result)


def test_a_sysv_segment_does_not_outlive_a_weak_mode_run(ctx, monkeypatch):
    """In the weak mode without namespaces (the host's IPC namespace), no System V segment is left behind: the
    filter denies shmget, so none can be made (a segment would outlive the run there)."""
    _without(monkeypatch, "namespaces")
    key = int.from_bytes(os.urandom(3), "big") + 1
    code = (LIBC_SHM + f"shm = libc.shmget({key}, ctypes.c_size_t(1 << 20), 0o1600)")
    with pytest.warns(RuntimeWarning):
        run = run_script(code, "__result__ = shm", LIMITS.model_copy(update={"allow_weak_isolation": True}))
    assert run.result == -1 or run.status == "denied", (run.status, run.error, run.result)
    keys = [int(line.split()[0]) for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
    assert key not in keys


LIBC_SHM = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmget.restype = ctypes.c_int\n"


@pytest.mark.parametrize("name", WEAK_CASES)
def test_the_weak_mode_still_denies_processes_sockets_and_the_callers_files(name, ctx, monkeypatch):
    """--unsafe-sandbox keeps seccomp and Landlock: no namespaces and no disk cap, but no escape by these routes."""
    if _landlock_abi() < (6 if name == "signal the caller" else 1):
        pytest.skip("this kernel's Landlock cannot confine it")
    _without(monkeypatch, "namespaces")
    code = (WEAK_CASES[name].replace("@OUTSIDE@", str(ctx.outside)).replace("@SECRET_FILE@", str(ctx.secret_file))
            .replace("@PID@", str(os.getpid())))
    with pytest.warns(RuntimeWarning):
        run = run_script(code, limits=LIMITS.model_copy(update={"allow_weak_isolation": True}))
    assert run.isolation == "weak" and run.status == "denied", (run.status, run.error)
    assert list(ctx.outside.iterdir()) == [] and SECRET not in run.model_dump_json() and ctx.signals == []


def test_the_weak_mode_keeps_its_limits_even_as_root(ctx, monkeypatch):
    _without(monkeypatch, "namespaces")
    code = ("import resource\ntry:\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
            "except (OSError, ValueError):\n    pass\nlimit = resource.getrlimit(resource.RLIMIT_AS)")
    with pytest.warns(RuntimeWarning):
        run = run_script(code, "__result__ = limit", LIMITS.model_copy(update={"allow_weak_isolation": True}))
        bomb = run_script("x = bytearray(10 ** 11)", limits=LIMITS.model_copy(update={"allow_weak_isolation": True}))
    assert run.result == [LIMITS.memory_mb << 20] * 2
    assert bomb.status == "memory"
