"""Children of tests and benchmarks die with their parent, however the parent dies (bench/child_processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from rprm_lite.bench.child_processes import start_child, stop_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENT = """
import sys, time
from rprm_lite.bench.child_processes import start_child
child = start_child([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_child_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)  # as a segfault would: no finally, no atexit
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the child outlived its parent"


def test_a_given_preexec_fn_still_runs(tmp_path):
    mark = tmp_path / "ran"
    child = start_child([sys.executable, "-c", "import os, sys; print(os.environ.get('X'))"], stdout=subprocess.PIPE,
                        text=True, env={**os.environ, "X": "1"}, preexec_fn=lambda: mark.write_text("yes"))
    assert child.communicate(timeout=30)[0].strip() == "1"
    assert mark.read_text() == "yes"
    stop_child(child)
