"""Benchmarks for rprm-lite, installed as `rprm_lite.bench` (the `bench` extra).

Accuracy: `processbench` and `prmbench` (data, predictions, official metrics), `harness` (the resumable
scoring loop), `records` (predictions files), `scaling` (threshold sweep, K-scaling, plots),
`bestofn` (rerank and best-of-N accuracy), `report` (result tables), `markdown` (the one table writer
of every benchmark and of demo_model) and `cli` (`rprm-lite bench ...`).
Speed: `speed` (the suite), `speed_score`, `convert_speed`, `train_speed` (training on CPU), `shapes` (the
model shapes they build),
`train_gpu` (SFT + DPO throughput and MFU on a GPU; torch and transformers only), `shared_prefix_speed`.
"""
