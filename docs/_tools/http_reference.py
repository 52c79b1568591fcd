"""The HTTP API reference, generated at build time from the OpenAPI schema of a real `rprm-lite serve`.

The server is started on a free loopback port with the demo model, asked for /openapi.json, and stopped;
each endpoint's page section comes from that schema (summary, description, request body, answers), so a
route or a body field the server gains appears in the next build without anyone copying it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from rprm_lite.bench.child_processes import start_child, stop_child

START_TIMEOUT_S = 120


def served_schema() -> dict[str, Any]:
    """The schema `rprm-lite serve` answers at /openapi.json."""
    command = [sys.executable, "-m", "rprm_lite.cli", "serve", "--port", "0", "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RPRM_MODEL"}
    server = start_child(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url = _wait_for_url(server)
        with urllib.request.urlopen(f"{url}/openapi.json", timeout=30) as answer:
            return json.load(answer)
    finally:
        stop_child(server, timeout=30)


def _wait_for_url(server: subprocess.Popen) -> str:
    """The URL the server prints once its port is bound; its stderr if it exits or stays silent too long."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, server.stderr), lines.put(None)], daemon=True).start()
    deadline, seen = time.monotonic() + START_TIMEOUT_S, []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if "listening on " in line:
            return line.split("listening on ", 1)[1].strip()
    raise RuntimeError("`rprm-lite serve` did not start: " + "".join(seen))


def page(schema: dict[str, Any]) -> str:
    info = schema["info"]
    parts = ["# HTTP API", "",
             f"The endpoints of `rprm-lite serve` (API version {info['version']}), generated from the OpenAPI "
             "schema the server itself answers at `/openapi.json` when the site is built. The whole schema is "
             "also here as [openapi.json](openapi.json); [Embed in a desktop app](../how-to/desktop-app.md) shows "
             "the endpoints at work, with streaming and cancellation.", "",
             "| method | path | what it does |", "|---|---|---|"]
    operations = [(path, method, op) for path, methods in schema["paths"].items() for method, op in methods.items()]
    parts += [f"| `{method.upper()}` | [`{path}`](#{_anchor(method, path)}) | {_first_line(op)} |"
              for path, method, op in operations]
    for path, method, op in operations:
        parts += ["", f"## `{method.upper()} {path}` {{#{_anchor(method, path)}}}", "", op.get("description", ""),
                  *_parameters(op), *_body(op), *_responses(op)]
    return "\n".join(parts) + "\n"


def _anchor(method: str, path: str) -> str:
    return f"{method}-" + "".join(c if c.isalnum() else "-" for c in path).strip("-")


def _first_line(op: dict[str, Any]) -> str:
    """The description's first sentence, on one line."""
    text = " ".join((op.get("description") or op.get("summary", "")).split())
    return text.split("; ")[0].split(". ")[0].rstrip(".").replace("|", "\\|") + "."


def _parameters(op: dict[str, Any]) -> list[str]:
    if not op.get("parameters"):
        return []
    rows = [f"| `{p['name']}` | {p['in']} | {p.get('schema', {}).get('type', '')} |" for p in op["parameters"]]
    return ["", "Parameters:", "", "| name | in | type |", "|---|---|---|", *rows]


def _body(op: dict[str, Any]) -> list[str]:
    content = op.get("requestBody", {}).get("content", {})
    return [line for media, spec in content.items()
            for line in ("", f"Request body (`{media}`), its JSON schema:", "", "```json",
                         json.dumps(spec.get("schema", {}), indent=2), "```")]


def _responses(op: dict[str, Any]) -> list[str]:
    rows = [f"| {status} | {answer.get('description', '').replace('|', '/')} | "
            f"{', '.join(f'`{media}`' for media in answer.get('content', {}))} |"
            for status, answer in op.get("responses", {}).items()]
    return ["", "Answers:", "", "| status | meaning | content |", "|---|---|---|", *rows]
