"""The demo R-PRM bundled as `rprm_lite/models/rprm-demo.gguf`: how it is made and measured (installed as
rprm_lite.demo_model). It sits above every other package because it uses all of them:
- `recipe`: data -> tokenizer -> seed critiques -> SFT -> pairs -> DPO -> GGUF -> F1, in one command
  (`python -m rprm_lite.demo_model.recipe --out build/recipe`).
- `evaluation`: the recipe's table on the synthetic test split (ProcessBench's metric via the bench harness,
  per error kind, paired bootstrap intervals).
- `examples`: the files in `examples/`, taken from the test split in id order.
"""
