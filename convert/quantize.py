"""Quantization through llama.cpp's own `llama_model_quantize`, in a child process.

llama.cpp aborts the whole process on some internal errors; running it in a child turns such an
abort into a `ConversionError` with llama.cpp's last log lines instead of killing the caller.
Run as `python -m rprm_lite.convert.quantize SRC DST TYPE THREADS` (that is what the parent does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .errors import DISK_FULL_ERRNOS, ConversionError

# --quant name -> llama_cpp constant. Types that need an importance matrix (IQ1/IQ2/IQ3) are left out
# because the converter does not compute one.
QUANT_TYPES: dict[str, str] = {
    name: f"LLAMA_FTYPE_MOSTLY_{name}"
    for name in ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
                 "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "IQ4_NL", "IQ4_XS")
}
LOG_LINES_SHOWN = 8


def normalize_quant(name: str | None) -> str | None:
    """The canonical --quant name (case-insensitive), or a clear error listing the valid ones."""
    if name is None:
        return None
    canonical = name.strip().upper()
    if canonical not in QUANT_TYPES:
        raise ConversionError(f"unknown quantization type {name!r}; valid types: {', '.join(QUANT_TYPES)}")
    return canonical


def quantize(source: Path, destination: Path, quant: str, *, threads: int | None = None) -> None:
    """Quantize the GGUF `source` into `destination` (type `quant`, e.g. "Q4_K_M") in a child process."""
    argv = [sys.executable, "-m", "rprm_lite.convert.quantize", str(source), str(destination), quant,
            str(threads or 0)]
    run_child(argv, what=f"quantizing to {quant}")
    if not destination.is_file():
        raise ConversionError(f"llama.cpp reported success quantizing to {quant} but wrote no {destination}")


def run_child(argv: list[str], *, what: str) -> None:
    """Run a child process; an error exit or a signal becomes a ConversionError with its last log lines."""
    completed = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if completed.returncode == 0:
        return
    disk_full = [os.strerror(number) for number in DISK_FULL_ERRNOS if os.strerror(number) in completed.stderr]
    if disk_full:
        raise ConversionError(f"disk full while {what} ({disk_full[0]}); free some space or choose another "
                              "output folder. Nothing was kept")
    log = (completed.stderr + completed.stdout).strip().splitlines()
    tail = "\n".join(line for line in log[-LOG_LINES_SHOWN:] if line.strip())
    if completed.returncode < 0:
        signal_name = signal.Signals(-completed.returncode).name
        cause = f"llama.cpp crashed ({signal_name})"
    else:
        cause = f"llama.cpp failed (exit status {completed.returncode})"
    raise ConversionError(f"{cause} while {what}; nothing was written" + (f". Its last log lines:\n{tail}"
                                                                             if tail else ""))


def _quantize_in_this_process(source: str, destination: str, quant: str, threads: int) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads
    return int(llama_cpp.llama_model_quantize(source.encode(), destination.encode(), params))


if __name__ == "__main__":
    source_arg, destination_arg, quant_arg, threads_arg = sys.argv[1:5]
    sys.exit(_quantize_in_this_process(source_arg, destination_arg, quant_arg, int(threads_arg)))
