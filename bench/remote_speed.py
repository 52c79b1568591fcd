"""Throughput of the remote backend: solutions per second as concurrency grows, and the client's own cost.

    python -m rprm_lite.bench.remote_speed [--model tiny.gguf] [--solutions 6] [--k 2] [--out bench/results]

Starts `python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible server, one CPU thread each) on
loopback serving the model (default: a tiny random-weight Qwen2 with the real tokenizer, built here), then
scores the same solutions through `RemoteScorer` at concurrency 1, 2 and 4 against one server, and at 2
and 4 against two servers (`--backend URL,URL`, round robin per solution). Every ratio is to concurrency 1
on one server, measured in the same run. llama_cpp.server runs one request at a time, so one server gains
only from overlapping the client's work with the server's; a second server adds a second worker.

The client's overhead per step is measured apart from any server: the same scorer against an instant
loopback server answering in vLLM's format (every answer canned), K critiques per step, so what is timed is
rendering, tokenizing, building and parsing JSON and the HTTP round trips. Never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table

RUNS = ((1, 1), (1, 2), (1, 4), (2, 2), (2, 4))  # (servers, concurrency)
CRITIQUE = " Adding 3 and 4 gives 7, as the step says. Is the step correct (Yes/No)?"


def solutions(count: int):
    from rprm_lite.solution import Solution

    return [Solution.create(f"Tom has {i} apples and buys 4 more. How many apples does he have?",
                            [f"Tom starts with {i} apples.", f"He buys 4 more, so {i} + 4 = {i + 4}."], id=f"s{i}")
            for i in range(count)]


def timed_run(vocab: Path, urls: list[str], concurrency: int, config, todo) -> dict:
    from rprm_lite.remote import RemoteConfig, RemoteScorer

    remote = RemoteConfig(urls=tuple(urls), concurrency=concurrency)
    with RemoteScorer(vocab, config, remote=remote) as scorer:
        started = time.perf_counter()
        results = list(scorer.score_many(todo))
        seconds = time.perf_counter() - started
        waited = sum(server.client.wait_seconds for server in scorer.servers)
        requests = sum(server.client.requests for server in scorer.servers)
    steps = sum(s.score is not None for r in results for s in r.steps)
    return {"servers": len(urls), "concurrency": concurrency, "seconds": seconds,
            "solutions_per_s": len(todo) / seconds, "steps": steps, "requests": requests, "request_wait_s": waited,
            "scores": [s.score for r in results for s in r.steps]}


def client_overhead(vocab: Path, config, todo) -> dict:
    """Seconds per step of the client itself, against an instant server answering in vLLM's format."""
    with instant_vllm_server() as url:
        row = timed_run(vocab, [url], 1, config, todo)
    return {"k": config.k, "steps": row["steps"], "seconds_per_step": row["seconds"] / row["steps"],
            "steps_per_s": row["steps"] / row["seconds"], "requests_per_step": row["requests"] / row["steps"]}


@contextmanager
def instant_vllm_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self._send({"data": [{"id": "r-prm", "object": "model", "owned_by": "vllm"}]})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/completions":
                self._send({"choices": [{"index": i, "text": CRITIQUE, "finish_reason": "stop"}
                                        for i in range(body["n"])]})
            else:
                self._send({"data": [{"index": i, "score": 0.9} for i in range(len(body["items"]))]})

        def _send(self, value):
            raw = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def llama_cpp_server(model: Path):
    import socket
    import subprocess
    import urllib.request

    from rprm_lite.bench.child_processes import start_child, stop_child
    from rprm_lite.weight_placement import llama_cpp_server_command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = start_child([*llama_cpp_server_command(), "--model", str(model), "--host", "127.0.0.1", "--port",
                           str(port), "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None:
                    raise SystemExit("llama_cpp.server exited at start (is the server extra installed?)") from None
                time.sleep(0.3)
        yield url
    finally:
        stop_child(process, timeout=30)


def run(model: Path, count: int, k: int, max_tokens: int) -> dict:
    from rprm_lite.config import ScoreConfig

    config = ScoreConfig(k=k, temperature=0.95, max_tokens=max_tokens, seed=0, all_steps=True)
    todo = solutions(count)
    rows = []
    with ExitStack() as stack:
        urls = [stack.enter_context(llama_cpp_server(model)) for _ in range(2)]
        timed_run(model, urls[:1], 1, config, todo[:1])  # warm both servers' first prompt evaluation
        timed_run(model, urls[1:], 1, config, todo[:1])
        for servers, concurrency in RUNS:
            rows.append(timed_run(model, urls[:servers], concurrency, config, todo))
    base, base_scores = rows[0]["solutions_per_s"], rows[0]["scores"]
    for row in rows:
        row["vs_concurrency_1"] = row["solutions_per_s"] / base
        row["max_score_diff_vs_concurrency_1"] = max(abs(a - b) for a, b in zip(row["scores"], base_scores,
                                                                                strict=True))
    for row in rows:
        del row["scores"]
    overhead = client_overhead(model, ScoreConfig(k=10, max_tokens=max_tokens, all_steps=True), solutions(20))
    return {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "load_average_1min": os.getloadavg()[0]},
            "model": model.name, "solutions": count, "steps_per_solution": 2, "k": k, "max_tokens": max_tokens,
            "server": "llama_cpp.server (llama-cpp-python), 1 thread each", "rows": rows, "client": overhead}


def markdown(report: dict) -> str:
    rows = [(r["servers"], r["concurrency"], f"{r['solutions_per_s']:.3f}", f"{r['vs_concurrency_1']:.2f}x",
             r["requests"], f"{r['request_wait_s']:.1f}", f"{r['max_score_diff_vs_concurrency_1']:.1e}")
            for r in report["rows"]]
    lines = [table(("servers", "concurrency", "solutions/s", "vs concurrency 1", "requests", "s waiting on the server",
                    "max score diff vs concurrency 1"), rows, align="rrrrrrr")]
    client = report["client"]
    machine = report["machine"]
    lines += ["", f"- {report['solutions']} solutions of {report['steps_per_solution']} steps, K={report['k']}, "
              f"max {report['max_tokens']} tokens per critique, against {report['server']} serving {report['model']}",
              f"- client overhead (instant vLLM-format server, K={client['k']}): "
              f"{client['seconds_per_step'] * 1000:.1f} ms per step ({client['steps_per_s']:.0f} steps/s, "
              f"{client['requests_per_step']:.0f} requests per step)",
              f"- machine: {machine['cpus']} CPUs, 1-minute load average {machine['load_average_1min']:.1f} at the end"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Remote backend throughput against llama_cpp.server.")
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: a tiny random Qwen2, built here)")
    parser.add_argument("--solutions", type=int, default=6)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rprm-remote-speed-") as scratch:
        model = args.model
        if model is None:
            from rprm_lite.convert.random_model import build_random_gguf

            model = build_random_gguf(Path(scratch) / "tiny-qwen2.gguf", tokenizer="qwen2", seed=0)
        report = run(model, args.solutions, args.k, args.max_tokens)
    write_report(args.out, "remote_speed", report, markdown(report))


if __name__ == "__main__":
    main()
