"""A benchmark's report on disk: `<name>.json` (the numbers) and `<name>.md` (the table), and the table printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("bench/results")  # relative to where a benchmark is run from


def write_report(out: Path, name: str, report: dict[str, Any], table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(table, encoding="utf-8")
    print(table, end="")
