"""Single-pass against released verdicts: the same critiques, P(Yes) read both ways.

    python -m rprm_lite.bench.verdict_modes --data DIR [--model PATH] [--subsets gsm8k] [--limit 40]
                                            [--k N] [--seed 0] [--max-tokens N] [--out bench/results]

Scores the first `--limit` items of each subset of a ProcessBench-format folder (`<subset>.json`) twice
with the same settings and seed, every step, once with `verdict="single-pass"` and once with
`verdict="released"`, item by item in turn so both modes see the same machine load. Sampling does not
depend on the mode, so both read the same critiques (checked). Reports the mean and largest absolute
difference of P(Yes) per critique, the share of steps whose verdict flips, ProcessBench F1 both ways
and the extra time of `released`. A synthetic test split for the bundled demo model:
`python -m rprm_lite.demo_model.synthetic --out DIR --train 0 --dev 0 --test 100 --seed 0` (use DIR/test).
Prints a markdown table and writes verdict_modes.json and verdict_modes.md (never a test).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.labelled import processbench
from rprm_lite.labelled.records import Prediction
from rprm_lite.markdown import table
from rprm_lite.prompt import FALLBACK_TEXT, VERDICT_PHRASE
from rprm_lite.results import SolutionResult
from rprm_lite.verdict import clean_critique, verdict_text

MODES = ("single-pass", "released")
GROUPS = ("all", "cleaning changed", "cleaning changed nothing", "fallback question")


def score_both(items: list[processbench.ProcessBenchItem], model: Path | None,
               settings: dict[str, Any]) -> tuple[dict[str, list[SolutionResult]], dict[str, float]]:
    """Each item scored in both modes, in turn; the results and the scoring seconds per mode."""
    from rprm_lite.scoring import Scorer

    results: dict[str, list[SolutionResult]] = {mode: [] for mode in MODES}
    seconds = dict.fromkeys(MODES, 0.0)
    scorers = {mode: Scorer(model, **settings, verdict=mode, all_steps=True) for mode in MODES}
    try:
        for number, item in enumerate(items, start=1):
            solution = item.bench_item().solution
            took = {}
            for mode in MODES if number % 2 else reversed(MODES):  # neither mode always goes first
                start = time.perf_counter()
                results[mode].append(scorers[mode].score_solution(solution))
                took[mode] = time.perf_counter() - start
                seconds[mode] += took[mode]
            print(f"{number}/{len(items)} {item.id}: " + ", ".join(f"{mode} {took[mode]:.1f} s" for mode in MODES),
                  file=sys.stderr, flush=True)
    finally:
        for scorer in scorers.values():
            scorer.close()
    return results, seconds


def cleaning_changes(critique: str) -> bool:
    """Whether the released cleaning changes what the verdict is read on (from the shown critique text)."""
    if VERDICT_PHRASE in critique:
        scored = critique.split(VERDICT_PHRASE)[0] + VERDICT_PHRASE
        return verdict_text(clean_critique(scored)) != scored
    sampled = critique.rsplit(FALLBACK_TEXT, 1)[0]
    return verdict_text(clean_critique(sampled)) != sampled + FALLBACK_TEXT


def compare(items: list[processbench.ProcessBenchItem], results: dict[str, list[SolutionResult]],
            seconds: dict[str, float], threshold: float) -> dict[str, Any]:
    """The differences between the two modes' readings of the same critiques."""
    diffs: dict[str, list[float]] = {group: [] for group in GROUPS}
    flips = steps = mismatched = 0
    for single, released in zip(results["single-pass"], results["released"], strict=True):
        for a, b in zip(single.steps, released.steps, strict=True):
            mismatched += a.critiques != b.critiques
            steps += 1
            flips += (a.score < threshold) != (b.score < threshold)
            for critique, p_a, p_b in zip(a.critiques, a.p_yes, b.p_yes, strict=True):
                changed = cleaning_changes(critique)
                for group in ("all", "cleaning changed" if changed else "cleaning changed nothing",
                              *(("fallback question",) if VERDICT_PHRASE not in critique else ())):
                    diffs[group].append(abs(p_a - p_b))
    metrics = {mode: processbench.evaluate(
        [(item, Prediction(id=item.id, scores=tuple(r.scores), group=item.subset))
         for item, r in zip(items, results[mode], strict=True)], threshold) for mode in MODES}
    return {
        "items": len(items), "steps": steps, "critique_mismatches": mismatched,
        "p_yes_abs_diff": {group: _summary(values) for group, values in diffs.items()},
        "verdict_flip_share": flips / steps,
        "f1": {mode: metrics[mode]["average_f1"] for mode in MODES},
        "f1_change": _difference(metrics["released"]["average_f1"], metrics["single-pass"]["average_f1"]),
        "subsets": {mode: metrics[mode]["subsets"] for mode in MODES},
        "seconds": seconds, "extra_seconds": seconds["released"] - seconds["single-pass"],
        "released_time_ratio": seconds["released"] / seconds["single-pass"],
    }


def _summary(values: list[float]) -> dict[str, Any]:
    return {"critiques": len(values), "mean": sum(values) / len(values) if values else None,
            "max": max(values) if values else None}


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    r = report["comparison"]
    total = r["p_yes_abs_diff"]["all"]["critiques"]
    differences = [(group, f"{d['critiques']} ({100 * d['critiques'] / total:.1f}%)", _f(d["mean"]), _f(d["max"]))
                   for group, d in r["p_yes_abs_diff"].items()]
    single, released = r["subsets"]["single-pass"], r["subsets"]["released"]
    outcomes = [("ProcessBench F1 (average)", _f(r["f1"]["single-pass"], 1), _f(r["f1"]["released"], 1),
                 _f(r["f1_change"], 1))]
    outcomes += [(f"{name} error acc / correct acc", f"{_f(a['error_acc'], 1)} / {_f(a['correct_acc'], 1)}",
                  f"{_f(released[name]['error_acc'], 1)} / {_f(released[name]['correct_acc'], 1)}", "")
                 for name, a in single.items()]
    outcomes += [
        (f"steps whose verdict flips (of {r['steps']})", "", "", f"{100 * r['verdict_flip_share']:.1f}%"),
        ("scoring seconds", f"{r['seconds']['single-pass']:.1f}", f"{r['seconds']['released']:.1f}",
         f"+{r['extra_seconds']:.1f} ({r['released_time_ratio']:.2f}x)"),
    ]
    s = report["settings"]
    title = (f"Verdict modes on {report['data']}: {r['items']} items ({report['model']}, K={s['k']}, "
             f"seed {s['seed']}, threshold {s['threshold']}); critiques that differ between the runs: "
             f"{r['critique_mismatches']} (must be 0)")
    return (title + "\n\n" + table(("abs. difference of P(Yes) per critique", "critiques", "mean", "max"), differences)
            + "\n\n" + table(("measure", "single-pass", "released", "change"), outcomes) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder of ProcessBench <subset>.json files")
    parser.add_argument("--model", type=Path, default=None, help="GGUF model (default: $RPRM_MODEL, else bundled)")
    parser.add_argument("--subsets", default="gsm8k", help="comma-separated ProcessBench subsets")
    parser.add_argument("--limit", type=int, default=40, help="first N items of each subset")
    parser.add_argument("--k", type=int, default=None, help="critiques per step (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None, help="max tokens per critique")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from rprm_lite.config import ScoreConfig

    settings = {name: value for name, value in (("k", args.k), ("seed", args.seed), ("max_tokens", args.max_tokens),
                                                ("threads", args.threads)) if value is not None}
    ScoreConfig(**settings)  # bad values fail before the model loads
    items = processbench.load_processbench(args.data, processbench.parse_subsets(args.subsets))
    items = [item for subset in processbench.parse_subsets(args.subsets)
             for item in [i for i in items if i.subset == subset][:args.limit]]
    results, seconds = score_both(items, args.model, settings)
    config = results["released"][0].config
    report = {"data": str(args.data), "model": config["model"],
              "settings": {key: config[key] for key in ("k", "seed", "temperature", "top_p", "max_tokens",
                                                        "threshold", "prompt_style")},
              "comparison": compare(items, results, seconds, config["threshold"])}
    write_report(args.out, "verdict_modes", report, markdown(report))


if __name__ == "__main__":
    main()
