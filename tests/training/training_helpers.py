"""Helpers shared by the training tests: small data sets, JSONL files, a stub teacher endpoint.

A module with a unique name (not `conftest`) so test files can import it without clashing with the
other test folders' conftest modules.
"""

from __future__ import annotations

import json
from pathlib import Path

SOLUTIONS = [
    {"id": "add", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "The answer is 5."], "label": -1},
    {"id": "mul", "question": "What is 4 * 6?", "steps": ["4 * 6 = 26.", "The answer is 26."], "label": 0},
    {"id": "sub", "question": "What is 9 - 4?", "steps": ["9 - 4 = 5.", "So 5 is left.", "The answer is 6."],
     "label": 2},
    {"id": "div", "question": "What is 8 / 2?", "steps": ["8 / 2 = 4.", "The answer is 4."],
     "labels": [True, None]},
]
CRITIQUE = "Check the arithmetic. Verification: Is the step correct (Yes/No)? {}"
YES, NO = CRITIQUE.format("Yes"), CRITIQUE.format("No")
# (question, step number) -> canned critique; labels: add all right, mul step 1 wrong,
# sub steps 1-2 right and 3 wrong (no step 4), div step 1 right and step 2 unlabelled
REPLIES = {
    ("What is 2 + 3?", 1): YES,                                       # agrees: kept
    ("What is 2 + 3?", 2): NO,                                        # disagrees: wrong verdict
    ("What is 4 * 6?", 1): NO,                                        # agrees: kept
    ("What is 9 - 4?", 1): "Looks fine to me.",                      # no verdict
    ("What is 9 - 4?", 2): "Good. Verification: Is the step correct (Yes/No)? **Yes**\n",  # kept, cut
    ("What is 9 - 4?", 3): "",                                        # empty
    ("What is 8 / 2?", 1): YES,                                       # agrees: kept
}
KEPT = {("add", 1), ("mul", 1), ("sub", 2), ("div", 1)}
DROPPED = {("add", 2): "wrong_verdict", ("sub", 1): "no_verdict", ("sub", 3): "empty"}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path

def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

def seed_records(solutions: list[dict] = SOLUTIONS) -> list[dict]:
    """A kept critique for every labelled step, as `data seed` writes them."""
    from rprm_lite.solution import solution_from_dict
    from rprm_lite.training.labels import labelled_steps

    records = []
    for item in solutions:
        for step in labelled_steps(solution_from_dict(item, where="test")):
            records.append({"id": item["id"], "step": step.number, "sample": 0, "label": step.label,
                            "question": item["question"], "steps": item["steps"],
                            "critique": CRITIQUE.format("Yes" if step.correct else "No")})
    return records

def pair_records(prompt_style: str = "chatml") -> list[dict]:
    """One pair per labelled step: the critique with the right verdict against the one with the wrong."""
    records = []
    for record in seed_records():
        right = record["critique"]
        wrong = CRITIQUE.format("No" if right.endswith("Yes") else "Yes")
        records.append({**{k: record[k] for k in ("id", "step", "label", "question", "steps")},
                        "prompt_style": prompt_style, "outcome": "paired",
                        "samples": [{"critique": right, "verdict": right[-3:].strip()},
                                    {"critique": wrong, "verdict": wrong[-3:].strip()}],
                        "pairs": [[0, 1]]})
    return records

class StubTeacher:
    """An OpenAI-compatible chat endpoint on localhost that answers from a table.

    `replies` maps (question, step number) to the critique text to return, to a list of texts
    returned in turn, or to an int HTTP status to answer with instead; `fail_first` holds keys whose
    first request gets HTTP 503.
    """

    def __init__(self, replies: dict, *, fail_first: set = frozenset()) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies = dict(replies)
        self.fail_first = set(fail_first)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = stub.answer(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, path: str, headers: dict, body: dict) -> tuple[int, dict]:
        user = body["messages"][1]["content"]
        question = user.split("\nQuestion: ", 1)[1].split("\nPrevious Steps: ", 1)[0]
        step = int(user.split("\nNow Step: Step ", 1)[1].split(":", 1)[0])
        key = (question, step)
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body, "key": key})
            if key in self.fail_first:
                self.fail_first.discard(key)
                return 503, {"error": "busy"}
            reply = self.replies[key]
            if isinstance(reply, list):
                reply = reply[(self.keys().count(key) - 1) % len(reply)]
        if isinstance(reply, int):
            return reply, {"error": {"message": f"status {reply} from the stub"}}
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}

    def keys(self) -> list[tuple[str, int]]:
        return [request["key"] for request in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
