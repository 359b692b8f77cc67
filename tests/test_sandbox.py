"""The sandbox runs scripts under OS isolation, reports why a run failed, and refuses where it cannot isolate."""

import pytest

from map_agent.tools import sandbox
from map_agent.tools.sandbox import SandboxLimits, SandboxUnavailable, isolation_problem, run_script

FAST = SandboxLimits(wall_s=5, cpu_s=1, memory_mb=512)

needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no OS isolation: {isolation_problem()}")


@needs_isolation
def test_a_well_behaved_script_returns_its_result_with_numpy_available():
    run = run_script("import numpy as np\nv = np.arange(3) * 2\nprint('hi')",
                     "__result__ = {'v': v, (0, 1): 2.5}", FAST)
    assert run.ok and run.stdout.strip() == "hi" and run.isolation == "os"
    assert run.result == {"__pairs__": [["v", [0, 2, 4]], [[0, 1], 2.5]]}


@needs_isolation
def test_infinite_loop_hits_the_cpu_limit():
    run = run_script("while True:\n    pass", limits=SandboxLimits(wall_s=60, cpu_s=1))
    assert run.status == "timeout" and "CPU limit" in run.error


@needs_isolation
def test_a_sleeping_script_is_killed_at_the_wall_clock_limit():
    run = run_script("import time\ntime.sleep(60)", limits=SandboxLimits(wall_s=1.5, cpu_s=5))
    assert run.status == "timeout" and "wall-clock" in run.error and run.seconds < 10


@needs_isolation
@pytest.mark.parametrize("bomb", ["x = bytearray(10 ** 11)",
                                  "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))"])
def test_memory_bomb_hits_the_memory_limit(bomb):
    # generous time limits, so that on a loaded machine the memory limit is still the one that binds
    run = run_script(bomb, limits=SandboxLimits(wall_s=60, cpu_s=20, memory_mb=256))
    assert run.status == "memory"


@needs_isolation
@pytest.mark.parametrize("code", [
    "import socket\nsocket.socket().connect(('127.0.0.1', 9))",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
])
def test_network_access_is_denied(code):
    run = run_script(code, "__result__ = 1", FAST)
    assert run.status in ("denied", "error") and "Operation not permitted" in run.error and run.result is None


@needs_isolation
def test_a_script_that_swallows_the_refusal_still_gets_no_socket():
    code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\n    got = True\nexcept OSError:\n" \
           "    got = False"
    assert run_script(code, "__result__ = got", FAST).result is False


@needs_isolation
@pytest.mark.parametrize("template", [
    "open({path!r}, 'w').write('x')",
    "import pathlib\npathlib.Path({path!r}).write_text('x')",
    "import os\nos.close(os.open({path!r}, os.O_WRONLY | os.O_CREAT))",
])
def test_writing_outside_the_working_directory_does_not_reach_the_host(tmp_path, template):
    target = tmp_path / "escaped.txt"
    run = run_script(template.format(path=str(target)), limits=FAST)
    assert run.status in ("denied", "error") and not target.exists()


@needs_isolation
def test_removing_files_outside_is_impossible(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    run = run_script(f"import os\nos.remove({str(victim)!r})", limits=FAST)
    assert not run.ok and victim.read_text() == "data"


@needs_isolation
def test_writing_inside_the_working_directory_is_allowed_and_discarded():
    run = run_script("open('notes.txt', 'w').write('ok')\ntext = open('notes.txt').read()\nimport os\n"
                     "where = os.getcwd()", "__result__ = [text, where]", FAST)
    assert run.ok and run.result == ["ok", sandbox.WORKDIR]
    again = run_script("import os\nfiles = os.listdir('.')", "__result__ = files", FAST)
    assert again.result == []  # a fresh directory for every run


@needs_isolation
def test_starting_processes_is_denied():
    run = run_script("import subprocess\nsubprocess.run(['true'])", limits=FAST)
    assert run.status == "denied" and "Operation not permitted" in run.error


@needs_isolation
def test_errors_exits_and_missing_bindings_are_reported():
    assert run_script("def f(:\n", limits=FAST).error.startswith("SyntaxError")
    assert run_script("x = 3\nraise SystemExit(0)", "__result__ = x", FAST).result == 3
    assert run_script("raise SystemExit(2)", limits=FAST).status == "error"
    run = run_script("x = 1", "__result__ = value_iteration(maze)", FAST)
    assert run.status == "error" and "value_iteration" in run.error
    run = run_script("def f():\n    return 1 / 0\nf()", limits=FAST)
    assert "return 1 / 0" in run.traceback  # the script's lines are shown in its traceback


def test_without_os_isolation_the_sandbox_refuses_with_one_line(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "user namespaces are disabled")
    with pytest.raises(SandboxUnavailable) as refused:
        run_script("x = 1", limits=FAST)
    message = str(refused.value)
    assert "user namespaces are disabled" in message and "--unsafe-sandbox" in message and "\n" not in message


def test_the_weak_mode_runs_loudly_when_asked(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "user namespaces are disabled")
    weak = SandboxLimits(wall_s=10, cpu_s=2, memory_mb=512, allow_weak_isolation=True)
    with pytest.warns(RuntimeWarning, match="WITHOUT full OS isolation .*; active layers: "):
        run = run_script("import os\nx = sorted(os.environ)", "__result__ = x", weak)
    assert run.ok and run.isolation == "weak" and set(run.result) - {"PWD"} == set(sandbox.ENV)  # bwrap sets PWD
