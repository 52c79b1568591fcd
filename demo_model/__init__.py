"""The demo R-PRM bundled as `rprm_lite/models/rprm-demo.gguf`: how it is made and measured (installed as
rprm_lite.demo_model). It sits above every other package because it uses all of them:
- `recipe`: data -> tokenizer -> seed critiques -> SFT -> pairs -> DPO -> GGUF -> F1, in one command
  (`python -m rprm_lite.demo_model.recipe --out build/recipe`).
- `evaluation`: the recipe's table on the synthetic test split (ProcessBench's metric via the bench harness,
  per error kind, paired bootstrap intervals).
- `examples`: the files in `examples/`, taken from the test split in id order.
- `synthetic_templates`, `synthetic_problems`, `synthetic`: the step-labelled arithmetic word problems the demo
  trains and measures on (their templates, the problem records, the generator with its injected errors;
  `python -m rprm_lite.demo_model.synthetic`), and `synthetic_teacher` (with `column_arithmetic`): the
  programmatic R-PRM-style teacher of their critiques.
- `arithmetic_drill`: the recipe's optional drill of the problems' arithmetic before SFT; `signals`: the early
  signals (teacher-forced digits, comparison words, verdicts) measured during SFT.
- `policy`, `measure`: the demo policy's recipe; the demo judge measured on a synthetic split, runs side by side.
"""
