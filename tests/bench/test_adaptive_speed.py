"""The fixed-vs-adaptive speed benchmark: its quickest real run on the tiny shape, and its table."""

import json

import pytest

from rprm_lite.bench import adaptive_speed
from shared_paths import QWEN2_VOCAB, needs_shared


def test_table_lists_every_run_and_the_median_ratios():
    result = {"job": {"model": "dir/m.gguf", "k": 10, "tokens": 64, "threads": 2, "repeats": 2},
              "runs": {"variants": {"fixed": {"seconds_per_step": [2.0, 3.0], "cpu_seconds": [3.0, 4.0],
                                              "critiques_per_step": 10.0},
                                    "adaptive": {"seconds_per_step": [1.0, 1.5], "cpu_seconds": [1.5, 2.0],
                                                 "critiques_per_step": 2.0}},
                       "wall_ratio": 2.0, "cpu_ratio": 2.0}}
    assert adaptive_speed.render(result) == (
        "## Fixed K vs adaptive K per scored step (m.gguf, K=10, 64-token critiques, 2 threads)\n\n"
        "| variant | critiques/step | s/step (each run) | CPU s (each run) |\n|---|---|---|---|\n"
        "| fixed | 10.0 | 2.00, 3.00 | 3.00, 4.00 |\n| adaptive | 2.0 | 1.00, 1.50 | 1.50, 2.00 |\n\n"
        "Median ratio fixed / adaptive: wall 2.00x, CPU 2.00x.\n")


@needs_shared(QWEN2_VOCAB)
@pytest.mark.slow
def test_a_real_run_on_the_tiny_shape(tmp_path):
    assert adaptive_speed.main(["--shape", "tiny", "--k", "4", "--tokens", "4", "--repeats", "1",
                                "--threads", "1", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "adaptive_speed.json").read_text())["runs"]
    assert runs["variants"]["fixed"]["critiques_per_step"] == 4.0
    assert runs["variants"]["adaptive"]["critiques_per_step"] in (2.0, 4.0)
    assert runs["wall_ratio"] > 0 and runs["cpu_ratio"] > 0
