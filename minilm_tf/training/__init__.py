"""Runs: the only room that reads configs, work directories and signals.

- `distillation` (+ `distillation_config`, `distillation_metrics`): `run_distillation`.
- `assistant`: the teacher -> assistant -> student route.
- `finetuning` (+ `finetune_common`, `callbacks`): `run_finetune`; QA runs
  `qa_finetuning.finetune_qa`.
- `seq2seq`: `run_seq2seq`, generation fine-tuning.
- `checkpointing`, `resume`, `distribute`: checkpoints with signals, resumable
  `fit`, strategies and each worker's checkpoint directory.
- `study` (+ `study_report`): the objective study (baselines against MiniLM).
"""
