"""Benchmarks for rprm-lite, installed as `rprm_lite.bench` (the `bench` extra).

Accuracy: `processbench` and `prmbench` (data, predictions, official metrics), `harness` (the resumable
scoring loop), `records` (predictions files), `sweeps` (accuracy against the threshold and against K, plots),
`bestofn` (rerank and best-of-N accuracy), `report` (result tables) and `cli` (`rprm-lite bench ...`).
Speed: `speed` (the suite), `score_speed` (rprm-lite vs a high-level Llama loop vs a bare decode loop),
`convert_speed`, `train_speed` (training on CPU), `train_gpu` (SFT + DPO throughput and MFU on a GPU; torch
and transformers only), `shared_prefix_speed`, `serve_speed`, `remote_speed`, `adaptive_speed`, `rescore_speed`.
What the speed benchmarks share: `shapes` (the model shapes), `speed_models` (the random-weight models of
each shape and format), `speed_jobs` (the `Job` a measurement child scores, its variants, the child process).
Every table is written by `markdown.table`; `report_files` writes a benchmark's JSON and markdown.
"""
