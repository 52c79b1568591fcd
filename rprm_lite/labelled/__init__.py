"""Labelled step data and the predictions made on it, read the way the benchmarks' own code reads them.

- `records`: predictions files (one JSON object per scored solution, appended and resumed) and `run.json`;
- `processbench`, `prmbench`: the two labelled formats, their predictions and their official metrics;
- `fit`: a calibration fitted on labelled predictions (the F1-optimal threshold, a score map, calibration error).

In the runtime because `rprm-lite calibrate` fits on them; the benchmark harness (`bench/`) scores and reports
with the same modules.
"""
