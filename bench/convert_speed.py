"""Converter benchmark: rprm-lite's converter against llama.cpp's reference `convert_hf_to_gguf.py`.

    python -m rprm_lite.bench.convert_speed [--shape qwen2.5-1.5b] [--outtype f16] [--quant Q4_K_M]

1. Reference comparison on tiny random checkpoints (Qwen2 tied, Llama untied; real Qwen2 tokenizer):
   the metadata keys and values, tensor names, shapes and types, and tensor data of both converters'
   f32, f16 and bf16 outputs. Differences are listed, none are hidden.
2. Speed on a random checkpoint shaped like Qwen2.5-1.5B in bf16, sharded safetensors: wall time and
   peak RSS of each converter (each in its own process, measured there from /proc), then Q4_K_M
   quantization of our output with llama.cpp. The two outputs are also compared tensor by tensor.
The reference converter is taken from the llama-cpp-python source distribution of the installed
version (fetched with `pip download` into a cache folder outside the repository). It needs torch
and sentencepiece. Prints markdown tables and writes JSON under bench/results/ (never a test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

from rprm_lite.markdown import table

from .report_files import DEFAULT_OUT
from .shapes import CONVERT_SHAPES, released_checkpoint

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rprm-lite"
REFERENCE_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
# keys whose values legitimately differ: naming heuristics of the reference, and our own rprm.* keys
NAME_KEYS = ("general.name", "general.size_label", "general.basename", "general.finetune")

# Runs a script or module in this process and writes its peak RSS (VmHWM, kB) on exit. A parent's
# ru_maxrss for a child is not used: after fork it can include the parent's own memory.
MEASURE = textwrap.dedent("""
    import atexit, json, runpy, sys
    report, kind, target, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    def write_peak():
        status = open("/proc/self/status").read().splitlines()
        peak = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
        with open(report, "w") as f:
            json.dump({"peak_rss_kib": peak}, f)
    atexit.register(write_peak)
    sys.argv = [target, *args]
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, str(__import__("pathlib").Path(target).parent))
        runpy.run_path(target, run_name="__main__")
""")


def reference_converter() -> Path:
    """convert_hf_to_gguf.py from the sdist of the installed llama-cpp-python (cached outside the repo)."""
    if os.environ.get("RPRM_REFERENCE_CONVERTER"):
        return Path(os.environ["RPRM_REFERENCE_CONVERTER"])
    import llama_cpp

    version = llama_cpp.__version__
    folder = CACHE / f"llama-cpp-python-{version}-convert"
    script = folder / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", download], check=True, capture_output=True)
        archive = next(Path(download).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].startswith(REFERENCE_MEMBERS)]
            for member in members:
                member.name = member.name[len(prefix):]
            folder.mkdir(parents=True, exist_ok=True)
            tar.extractall(folder, members=members, filter="data")
    return script


def run_measured(kind: str, target: str, args: list[str], log: Path) -> dict:
    """Run a module or script in a fresh process; wall seconds and its own peak RSS."""
    report = log.with_suffix(".rss.json")
    started = time.perf_counter()
    with open(log, "w") as log_file:
        done = subprocess.run([sys.executable, "-c", MEASURE, str(report), kind, target, *args],
                              stdout=log_file, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{target} failed (exit {done.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    peak = json.loads(report.read_text())["peak_rss_kib"] * 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 1e6, 1)}


def convert_ours(source: Path, out: Path, outtype: str, logs: Path) -> dict:
    args = [str(source), "-o", str(out), "--outtype", outtype, "--force"]
    return run_measured("module", "rprm_lite.convert.cli", args, logs / f"ours-{outtype}.log")


def convert_reference(script: Path, source: Path, out: Path, outtype: str, logs: Path) -> dict:
    args = [str(source), "--outfile", str(out), "--outtype", outtype]
    return run_measured("script", str(script), args, logs / f"reference-{outtype}.log")


def compare_gguf(ours: Path, reference: Path) -> dict:
    """Metadata and tensors of two GGUF files: what is equal and every difference."""
    import numpy as np
    from gguf import GGUFReader

    from rprm_lite.convert.gguf_file import read_gguf_metadata

    meta_ours, meta_ref = read_gguf_metadata(ours), read_gguf_metadata(reference)
    differing = sorted(k for k in set(meta_ours) & set(meta_ref) if meta_ours[k] != meta_ref[k])
    tensors_ours = {t.name: t for t in GGUFReader(ours).tensors}
    tensors_ref = {t.name: t for t in GGUFReader(reference).tensors}
    common = sorted(set(tensors_ours) & set(tensors_ref))
    layout_diff = [n for n in common if list(tensors_ours[n].shape) != list(tensors_ref[n].shape)
                   or tensors_ours[n].tensor_type != tensors_ref[n].tensor_type]
    data_diff = [n for n in common if n not in layout_diff
                 and not np.array_equal(np.asarray(tensors_ours[n].data), np.asarray(tensors_ref[n].data))]
    return {
        "keys_equal": len(set(meta_ours) & set(meta_ref)) - len(differing),
        "keys_only_ours": sorted(set(meta_ours) - set(meta_ref)),
        "keys_only_reference": sorted(set(meta_ref) - set(meta_ours)),
        "keys_differing": {k: [_short(meta_ours[k]), _short(meta_ref[k])] for k in differing},
        "tensors": len(common),
        "tensors_only_ours": sorted(set(tensors_ours) - set(tensors_ref)),
        "tensors_only_reference": sorted(set(tensors_ref) - set(tensors_ours)),
        "tensors_layout_differing": layout_diff,
        "tensors_data_differing": data_diff,
        "tensor_types": sorted({t.tensor_type.name for t in tensors_ours.values()}),
    }


def _short(value):
    return f"list of {len(value)}" if isinstance(value, list) else value


def reference_comparison(script: Path, work: Path) -> list[dict]:
    from rprm_lite.convert.random_model import build_random_checkpoint

    results = []
    cases = (("qwen2", True, "float32"), ("llama", False, "bfloat16"))
    for arch, tied, dtype in cases:
        folder = build_random_checkpoint(work / f"tiny-{arch}", arch=arch, tokenizer="qwen2", tied=tied,
                                         dtype=dtype, shards=2)
        for outtype in ("f32", "f16", "bf16"):
            ours, reference = work / f"ours-{arch}-{outtype}.gguf", work / f"ref-{arch}-{outtype}.gguf"
            convert_ours(folder, ours, outtype, work)
            convert_reference(script, folder, reference, outtype, work)
            results.append({"arch": arch, "tied": tied, "source_dtype": dtype, "outtype": outtype,
                            **compare_gguf(ours, reference)})
    return results


def speed(script: Path | None, shape: str, outtype: str, quant: str, work: Path) -> dict:
    from rprm_lite.convert.random_model import build_random_checkpoint
    from rprm_lite.convert.safetensors_io import read_checkpoint_tensors

    started = time.perf_counter()
    folder = build_random_checkpoint(work / f"random-{shape}", tokenizer="qwen2", dtype="bfloat16", shards=2,
                                     **released_checkpoint(shape))
    refs = read_checkpoint_tensors(folder).values()
    largest = max(ref.nbytes for ref in refs)
    result = {"shape": shape, "source": "bf16, 2 shards", "checkpoint_mb": round(sum(r.nbytes for r in refs) / 1e6),
              "largest_tensor_mb": round(largest / 1e6, 1), "build_seconds": round(time.perf_counter() - started, 1),
              "rss_target_mb": round((1.5 * largest + 500e6) / 1e6)}
    _read_through(folder)  # both converters then read from the page cache
    ours = work / f"ours-{shape}-{outtype}.gguf"
    result["ours"] = convert_ours(folder, ours, outtype, work) | {"output_mb": round(ours.stat().st_size / 1e6)}
    if script is not None:
        reference = work / f"ref-{shape}-{outtype}.gguf"
        result["reference"] = convert_reference(script, folder, reference, outtype, work) | {
            "output_mb": round(reference.stat().st_size / 1e6)}
        result["outputs_compared"] = compare_gguf(ours, reference)
        reference.unlink()
    quantized = work / f"ours-{shape}-{quant}.gguf"
    args = [str(ours), str(quantized), quant, "0"]
    result["quantize"] = run_measured("module", "rprm_lite.convert.quantize", args, work / "quantize.log") | {
        "type": quant, "output_mb": round(quantized.stat().st_size / 1e6)}
    return result


def _read_through(folder: Path) -> None:
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as f:
            while f.read(64 * 1024 * 1024):
                pass


def speed_table(result: dict, outtype: str) -> str:
    tools = [("rprm-lite convert", "ours")]
    if "reference" in result:
        tools.append(("llama.cpp convert_hf_to_gguf.py", "reference"))
    rows = [(f"bf16 -> {outtype}", tool, result[key]["seconds"], result[key]["peak_rss_mb"], result[key]["output_mb"])
            for tool, key in tools]
    quantize = result["quantize"]
    rows.append((f"{outtype} -> {quantize['type']}", "llama_model_quantize (child process)", quantize["seconds"],
                 quantize["peak_rss_mb"], quantize["output_mb"]))
    meets = result["ours"]["peak_rss_mb"] <= result["rss_target_mb"]
    lines = [table(("step", "tool", "wall s", "peak RSS MB", "output MB"), rows, align="llrrr"), "",
             f"checkpoint {result['checkpoint_mb']} MB ({result['shape']}, {result['source']}); largest tensor "
             f"{result['largest_tensor_mb']} MB; peak RSS target 1.5 x largest + 500 MB = "
             f"{result['rss_target_mb']} MB: rprm-lite {'meets' if meets else 'MISSES'} it"]
    if "reference" in result:
        ratio = result["reference"]["seconds"] / result["ours"]["seconds"]
        compared = result["outputs_compared"]
        lines.append(f"speed: rprm-lite takes {1 / ratio:.2f}x the reference's wall time ({ratio:.2f}x faster); "
                     f"tensors with differing data: {len(compared['tensors_data_differing'])} of "
                     f"{compared['tensors']}")
    return "\n".join(lines)


def comparison_table(results: list[dict]) -> str:
    rows = [(r["arch"] + (" tied" if r["tied"] else ""), r["source_dtype"], r["outtype"], r["keys_equal"],
             ", ".join(r["keys_only_ours"]) or "-", ", ".join(r["keys_only_reference"]) or "-",
             _differing(r["keys_differing"]), r["tensors"], len(r["tensors_layout_differing"]),
             len(r["tensors_data_differing"])) for r in results]
    return table(("arch", "source", "out", "keys equal", "only ours", "only reference", "differing values", "tensors",
                  "layout diff", "data diff"), rows, align="lllrlllrrr")


def _differing(keys: dict) -> str:
    return "; ".join(f"{k}: ours {v[0]!r} / ref {v[1]!r}" for k, v in keys.items()) or "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rprm_lite.bench.convert_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=CONVERT_SHAPES, default="qwen2.5-1.5b")
    parser.add_argument("--outtype", choices=("f32", "f16", "bf16"), default="f16")
    parser.add_argument("--quant", default="Q4_K_M")
    parser.add_argument("--skip-reference", action="store_true", help="Only time rprm-lite and quantization.")
    parser.add_argument("--skip-speed", action="store_true", help="Only compare with the reference converter.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder [default: a temporary one].")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    script = None if args.skip_reference else reference_converter()
    with tempfile.TemporaryDirectory(prefix="rprm-convert-bench-", dir=args.work) as scratch:
        work = Path(scratch)
        summary = {"llama_cpp_python": _version("llama_cpp"), "gguf": _version("gguf"),
                   "reference_converter": str(script) if script else None, "cpus": os.cpu_count()}
        if script is not None:
            summary["reference_comparison"] = reference_comparison(script, work)
            print("## Reference comparison (tiny checkpoints, real Qwen2 tokenizer)\n", flush=True)
            print(comparison_table(summary["reference_comparison"]) + "\n", flush=True)
        if not args.skip_speed:
            summary["speed"] = speed(script, args.shape, args.outtype, args.quant, work)
            print(f"## Conversion speed ({args.shape})\n")
            print(speed_table(summary["speed"], args.outtype))
    args.out.mkdir(parents=True, exist_ok=True)
    label = "reference-only" if args.skip_speed else args.shape
    path = args.out / f"convert_speed-{label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {path}")


def _version(module: str) -> str:
    from importlib.metadata import version

    return version({"llama_cpp": "llama-cpp-python"}.get(module, module))


if __name__ == "__main__":
    main()
