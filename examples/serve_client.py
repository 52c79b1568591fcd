"""A client of `rprm-lite serve` that prints each step's verdict as soon as it is known.

Standard library only: copy it into a desktop app as it is. Start the server first:

    rprm-lite serve --port 8080          # loads the model once; Ctrl-C stops it
    python examples/serve_client.py examples/solution.json [--url http://127.0.0.1:8080] [--critiques]

The request is `POST /v1/score` with `"stream": true`; the answer is NDJSON, one JSON object per line:
a "step" event per scored step, then a "result" event with the whole result (the same object as
`rprm-lite score --json`), or an "error" event. Closing the connection (Ctrl-C here) cancels the scoring.
Set RPRM_API_KEY when the server was started with `--api-key-env RPRM_API_KEY`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def stream_score(url: str, solution: dict, *, critiques: bool = False, api_key: str | None = None):
    """Yield the server's events (dicts) for one solution, as they arrive."""
    body = {**solution, "stream": True, "options": {**solution.get("options", {}), "show_critiques": critiques}}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{url}/v1/score", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=3600) as response:
        for line in response:  # one event per line, delivered as soon as the server writes it
            if line.strip():
                yield json.loads(line)


def wait_until_ready(url: str, timeout: float = 120) -> None:
    """/health answers 503 while the model loads, 200 once it can score."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except (urllib.error.HTTPError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def show(event: dict, *, critiques: bool) -> None:
    if event["event"] == "step":
        score = "-" if event["score"] is None else f"{event['score']:.3f}"
        print(f"step {event['index']}: {event['verdict']:<11} score {score}", flush=True)
        for number, text in enumerate(event.get("critiques", []) if critiques else [], start=1):
            print(f"    critique {number}: {' '.join(text.split())[:200]}")
    elif event["event"] == "result":
        result = event["result"]
        where = f"first error at step {result['first_error_step']}" if result["first_error_step"] else "no error found"
        print(f"solution {result['id']}: {where}; solution score {result['solution_score']:.3f}")
    else:
        print(f"error ({event['error']['type']}): {event['error']['message']}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("solution", help="a JSON file with 'question' and 'steps'")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--critiques", action="store_true", help="print the critiques too")
    args = parser.parse_args()
    with open(args.solution, encoding="utf-8") as handle:
        solution = json.load(handle)
    try:
        wait_until_ready(args.url)
        for event in stream_score(args.url, solution, critiques=args.critiques, api_key=os.environ.get("RPRM_API_KEY")):
            show(event, critiques=args.critiques)
            if event["event"] == "error":
                return 1
    except urllib.error.HTTPError as exc:  # a refused request: the body says why, in one line
        print(f"error ({exc.code}): {json.loads(exc.read())['error']['message']}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"error: cannot reach {args.url} ({exc.reason}); is `rprm-lite serve` running?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # leaving closes the connection, which cancels the scoring on the server
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
