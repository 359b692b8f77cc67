"""The sandbox stops what an untrusted script must not do, reports why, and never harms the caller."""

import pytest

from map_agent.tools.sandbox import SandboxLimits, run_script

FAST = SandboxLimits(wall_s=5, cpu_s=1, memory_mb=512)


def test_a_well_behaved_script_returns_its_result_with_numpy_available():
    run = run_script("import numpy as np\nv = np.arange(3) * 2\nprint('hi')",
                     "__result__ = {'v': v, (0, 1): 2.5}", FAST)
    assert run.ok and run.stdout.strip() == "hi"
    assert run.result == {"__pairs__": [["v", [0, 2, 4]], [[0, 1], 2.5]]}


def test_infinite_loop_hits_the_cpu_limit():
    run = run_script("while True:\n    pass", limits=SandboxLimits(wall_s=60, cpu_s=1))
    assert run.status == "timeout" and "CPU limit" in run.error


def test_a_sleeping_script_is_killed_at_the_wall_clock_limit():
    run = run_script("import time\ntime.sleep(60)", limits=SandboxLimits(wall_s=1.5, cpu_s=5))
    assert run.status == "timeout" and "wall-clock" in run.error and run.seconds < 10


@pytest.mark.parametrize("bomb", ["x = bytearray(10 ** 11)",
                                  "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))"])
def test_memory_bomb_hits_the_memory_limit(bomb):
    # generous time limits, so that on a loaded machine the memory limit is still the one that binds
    run = run_script(bomb, limits=SandboxLimits(wall_s=60, cpu_s=20, memory_mb=256))
    assert run.status == "memory"


@pytest.mark.parametrize("code", [
    "import socket\nsocket.socket().connect(('127.0.0.1', 9))",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
    # caught by the script: still recorded and scored as a failure
    "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\nexcept Exception:\n    pass\nx = 1",
])
def test_network_access_is_refused(code):
    run = run_script(code, "__result__ = 1", FAST)
    assert run.status == "network" and "network access" in run.error and run.result is None


@pytest.mark.parametrize("template", [
    "open({path!r}, 'w').write('x')",
    "import pathlib\npathlib.Path({path!r}).write_text('x')",
    "import os\nos.close(os.open({path!r}, os.O_WRONLY | os.O_CREAT))",
])
def test_writing_outside_the_working_directory_is_refused(tmp_path, template):
    target = tmp_path / "escaped.txt"
    run = run_script(template.format(path=str(target)), limits=FAST)
    assert run.status == "filesystem" and "outside the working directory" in run.error
    assert not target.exists()


def test_removing_files_outside_is_refused(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    run = run_script(f"import os\nos.remove({str(victim)!r})", limits=FAST)
    assert run.status == "filesystem" and victim.read_text() == "data"


def test_writing_inside_the_working_directory_is_allowed_and_discarded():
    run = run_script("open('notes.txt', 'w').write('ok')\ntext = open('notes.txt').read()", "__result__ = text",
                     FAST)
    assert run.ok and run.result == "ok"


def test_starting_processes_is_refused():
    run = run_script("import subprocess\nsubprocess.run(['true'])", limits=FAST)
    assert run.status == "process"


def test_errors_exits_and_missing_bindings_are_reported():
    assert run_script("def f(:\n", limits=FAST).error.startswith("SyntaxError")
    assert run_script("x = 3\nraise SystemExit(0)", "__result__ = x", FAST).result == 3
    assert run_script("raise SystemExit(2)", limits=FAST).status == "error"
    run = run_script("x = 1", "__result__ = value_iteration(maze)", FAST)
    assert run.status == "error" and "value_iteration" in run.error
