"""The cost of `rprm-lite serve` over the in-process `Scorer`, and how fast a disconnect frees the engine.

    python -m rprm_lite.bench.serve_speed [--model PATH] [--solutions 8] [--rounds 3] [--k 4]
                                          [--max-tokens 32] [--threads 1] [--disconnects 5] [--out bench/results]

One run, one machine, the same model and settings on both sides (default: the demo model):
1. overhead: the same solutions scored in rounds, each solution once in process (`Scorer.score_solution`)
   and once through the server (`POST /v1/score`, a fresh loopback connection each), alternating so that
   both see the same machine load. Reports solutions/s and per-step latency of each, the ratio
   server/in-process, and checks that both gave the same result line. Streaming: the same, with
   `"stream": true`, its per-step latency taken between step events as the client reads them.
2. disconnect: a long streaming request is cancelled by closing its connection; the time from the close
   to the engine being free (`/v1/info` says nothing runs) and to the first step event of the next
   request, against that request's time on an idle engine. The engine's time per decode (one token of
   each of the K critiques), from two in-process runs that differ only in max_tokens, puts it in decode steps.
Never a test: tests never time anything.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from rprm_lite.bench.child_processes import start_child
from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table

LONG_MAX_TOKENS = 3000
BUSY_WAIT_S = 60  # a long request that never shows as running is a failed measurement, not a wait forever


def solutions(count: int) -> list[dict]:
    return [{"id": f"bench-{i}", "question": f"A shop sells {i + 2} pens for {3 * (i + 2)} dollars. What does one "
             "pen cost?", "steps": [f"{i + 2} pens cost {3 * (i + 2)} dollars.",
                                    f"One pen costs {3 * (i + 2)} / {i + 2} = 3 dollars.", "The answer is 3."]}
            for i in range(count)]


class ServerProcess:
    def __init__(self, model: Path, options: list[str]) -> None:
        self.proc = start_child([sys.executable, "-m", "rprm_lite.cli", "serve", "--model", str(model),
                                 "--port", "0", *options], stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if "listening on " in line:
                parts = urlsplit(line.split("listening on ")[1].strip())
                self.address = (parts.hostname, parts.port)
                break
        else:
            raise SystemExit(f"the server did not start (exit {self.proc.wait()})")
        while self.get("/health")[0] != 200:
            time.sleep(0.01)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(*self.address, timeout=600)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def engine_busy(self) -> bool:
        return json.loads(self.get("/v1/info")[1])["queue"]["running"]

    def post(self, body: dict) -> tuple[bytes, list[float]]:
        """The answer, and the client's clock at each line it read (one per event when streaming)."""
        conn = http.client.HTTPConnection(*self.address, timeout=600)
        try:
            conn.request("POST", "/v1/score", body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            lines, stamps = [], []
            for line in response:
                lines.append(line)
                stamps.append(time.perf_counter())
            if response.status != 200:
                raise SystemExit(f"the server answered {response.status}: {b''.join(lines)[:300]!r}")
            return b"".join(lines), stamps
        finally:
            conn.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


def overhead(scorer, server: ServerProcess, items: list[dict], rounds: int) -> dict:
    from rprm_lite.output import to_json_line
    from rprm_lite.solution import Solution

    times = {"in_process": [], "server": [], "server_stream": []}
    steps = {"in_process": [], "server_stream": []}
    mismatches = 0
    for number in range(rounds):
        for item in items:
            # each round and path asks its own question: the server's step cache must not answer it
            item, streamed = own_question(item, f"round {number}, a"), own_question(item, f"round {number}, b")
            solution = Solution.create(item["question"], item["steps"], id=item["id"])
            start, stamps = time.perf_counter(), []
            result = scorer.score_solution(solution, on_step=lambda *_, seen=stamps: seen.append(time.perf_counter()))
            times["in_process"].append(time.perf_counter() - start)
            steps["in_process"] += _gaps(start, stamps)
            start = time.perf_counter()
            body, _ = server.post(item)
            times["server"].append(time.perf_counter() - start)
            mismatches += body.decode() != to_json_line(result, critiques=False)
            start = time.perf_counter()
            _, stamps = server.post({**streamed, "stream": True})
            times["server_stream"].append(time.perf_counter() - start)
            steps["server_stream"] += _gaps(start, stamps[:-1])  # the last line is the result event
    total = {name: sum(values) for name, values in times.items()}
    return {
        "solutions": len(times["in_process"]), "steps_per_solution": len(items[0]["steps"]),
        "solutions_per_s": {name: len(values) / total[name] for name, values in times.items()},
        "median_step_latency_ms": {name: 1000 * statistics.median(values) for name, values in steps.items()},
        "ratio_server": total["server"] / total["in_process"],
        "ratio_server_stream": total["server_stream"] / total["in_process"],
        "results_differing": mismatches,
    }


def own_question(item: dict, tag: str) -> dict:
    """`item` asking a question of its own (tagged), so that no step of it is in the server's step cache:
    this benchmark measures scoring, not the cache."""
    return {**item, "question": f"{item['question']} ({tag})"}


def _gaps(start: float, stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip([start, *stamps], stamps, strict=False)]


def seconds_per_decode(scorer, item: dict, short: int = 16, long: int = 80) -> float:
    from rprm_lite.solution import Solution

    solution = Solution.create(item["question"], item["steps"][:1])
    defaults, elapsed = scorer.config, {}
    try:
        for max_tokens in (short, long, short, long):
            scorer.use_config(defaults.replace(max_tokens=max_tokens))
            start = time.perf_counter()
            scorer.score_solution(solution)
            elapsed.setdefault(max_tokens, []).append(time.perf_counter() - start)
    finally:
        scorer.use_config(defaults)
    return (min(elapsed[long]) - min(elapsed[short])) / (long - short)


def disconnect(server: ServerProcess, item: dict, count: int) -> dict:
    def short(name: str) -> dict:
        return {**own_question(item, name), "id": name, "steps": item["steps"][:1], "stream": True}

    _cancel_long(server, item, "warm-up")  # grows the context to the long request's size, as in the runs below
    idle = []
    for number in range(3):
        start = time.perf_counter()
        _, stamps = server.post(short(f"idle-{number}"))
        idle.append(stamps[0] - start)
    to_free, to_next = [], []
    for number in range(count):
        closed, freed = _cancel_long(server, item, f"long-{number}")
        to_free.append(freed - closed)
        _, stamps = server.post(short(f"next-{number}"))
        to_next.append(stamps[0] - closed - statistics.median(idle))  # what the next client waited beyond idle
    return {"disconnects": count, "median_s_to_free_engine": statistics.median(to_free),
            "max_s_to_free_engine": max(to_free), "median_extra_s_for_next_request": statistics.median(to_next),
            "idle_first_step_s": statistics.median(idle)}


def _cancel_long(server: ServerProcess, item: dict, solution_id: str) -> tuple[float, float]:
    """Start a long streaming request, close its connection mid-critique; (closed at, engine free at).

    Each long request asks its own question (a warm-up that finished before its close would otherwise answer
    the next one from the step cache at once)."""
    conn = http.client.HTTPConnection(*server.address, timeout=600)
    body = {**own_question(item, solution_id), "id": solution_id, "stream": True,
            "options": {"max_tokens": LONG_MAX_TOKENS, "all_steps": True}}
    conn.request("POST", "/v1/score", body=json.dumps(body), headers={"Content-Type": "application/json"})
    conn.getresponse()
    started = time.perf_counter()
    while not server.engine_busy():
        if time.perf_counter() - started > BUSY_WAIT_S:
            raise SystemExit(f"the server did not start scoring {solution_id} within {BUSY_WAIT_S} s")
        time.sleep(0.005)
    time.sleep(1.0)  # past the prompt (one decode of up to 512 tokens), inside the critiques
    closed = time.perf_counter()
    conn.close()
    while server.engine_busy():
        time.sleep(0.002)
    return closed, time.perf_counter()


def run(args: argparse.Namespace) -> dict:
    import llama_cpp

    from rprm_lite.model_file import resolve_model_path
    from rprm_lite.scoring import Scorer
    from rprm_lite.step_cache import StepCache

    model = resolve_model_path(args.model)
    options = ["--k", str(args.k), "--max-tokens", str(args.max_tokens), "--seed", "0", "--threads", str(args.threads),
               "--all-steps", "--max-queue", "4", "--max-request-tokens", str(LONG_MAX_TOKENS)]
    items = solutions(args.solutions)
    server = ServerProcess(model, options)
    try:
        settings = dict(k=args.k, max_tokens=args.max_tokens, seed=0, threads=args.threads, all_steps=True)
        with Scorer(model, cache=StepCache(max_entries=0), **settings) as scorer:  # no cache: scoring is measured
            scorer.score(items[0]["question"], items[0]["steps"])  # warm-up, both sides
            server.post(items[0])
            report = {"overhead": overhead(scorer, server, items, args.rounds),
                      "seconds_per_decode": seconds_per_decode(scorer, items[0])}
        report["disconnect"] = disconnect(server, items[0], args.disconnects)
        report["disconnect"]["decodes_to_free_engine"] = (report["disconnect"]["median_s_to_free_engine"]
                                                          / report["seconds_per_decode"])
    finally:
        report_exit = server.stop()
    report["server_exit_code"] = report_exit
    report["setup"] = {"model": model.name, "k": args.k, "max_tokens": args.max_tokens, "threads": args.threads,
                       "rounds": args.rounds, "machine": platform.machine(), "python": platform.python_version(),
                       "llama_cpp_python": llama_cpp.__version__}
    return report


def markdown(report: dict) -> str:
    o, d, s = report["overhead"], report["disconnect"], report["setup"]
    paths = [("in process (Scorer)", "in_process", "1.00"), ("server, JSON", "server", f"{o['ratio_server']:.3f}"),
             ("server, NDJSON stream", "server_stream", f"{o['ratio_server_stream']:.3f}")]
    rows = []
    for label, key, ratio in paths:
        latency = o["median_step_latency_ms"].get(key)
        rows.append((label, f"{o['solutions_per_s'][key]:.2f}", "-" if latency is None else f"{latency:.1f}", ratio))
    disconnect = [
        ("close to free engine",
         f"{1000 * d['median_s_to_free_engine']:.1f} ms (max {1000 * d['max_s_to_free_engine']:.1f} ms)"),
        (f"same, in decode steps ({1000 * report['seconds_per_decode']:.1f} ms each)",
         f"{d['decodes_to_free_engine']:.1f}"),
        ("next request's wait beyond an idle engine", f"{1000 * d['median_extra_s_for_next_request']:.1f} ms"),
        ("server exit code after SIGTERM", report["server_exit_code"])]
    lines = [f"### rprm-lite serve: {s['model']}, K={s['k']}, max_tokens={s['max_tokens']}, threads={s['threads']}, "
             f"{o['solutions']} solutions of {o['steps_per_solution']} steps", "",
             table(("path", "solutions/s", "median step latency (ms)", "time / in-process time"), rows, align="lrrr"),
             "", f"results differing between server and in process: {o['results_differing']}", "",
             table((f"disconnect (median of {d['disconnects']})", "value"), disconnect, align="lr"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HTTP overhead of rprm-lite serve, and disconnect-to-free time.")
    parser.add_argument("--model", type=Path, default=None, help="GGUF model (default: the bundled one)")
    parser.add_argument("--solutions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--disconnects", type=int, default=5, help="long requests cancelled by closing them")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if min(args.solutions, args.rounds, args.k, args.max_tokens, args.threads, args.disconnects) < 1:
        parser.error("--solutions, --rounds, --k, --max-tokens, --threads and --disconnects must be at least 1")
    report = run(args)
    write_report(args.out, "serve_speed", report, markdown(report))


if __name__ == "__main__":
    main()
