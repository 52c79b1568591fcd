"""Child processes of benchmarks and tests (servers, mostly) that die with their parent.

A benchmark or a test run that crashes (llama.cpp's SIGSEGV, an OOM kill) skips every `finally`, and a server it
started would run on as an orphan holding its port and a core. On Linux the child asks the kernel to kill it when
its parent dies (`PR_SET_PDEATHSIG`); elsewhere it is stopped by `stop_child` as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_child(argv: list[str], **popen_options: Any) -> subprocess.Popen:
    """`subprocess.Popen(argv, **popen_options)`, killed by the kernel if this process dies first (a
    `preexec_fn` given runs after that)."""
    if sys.platform.startswith("linux"):
        popen_options["preexec_fn"] = _die_with_parent(os.getpid(), popen_options.get("preexec_fn"))
    return subprocess.Popen(argv, **popen_options)


def stop_child(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent(parent: int, then: Callable[[], None] | None):
    def in_child() -> None:  # runs in the child between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        if then is not None:
            then()

    return in_child
