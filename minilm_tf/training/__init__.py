"""Runs: the only room that reads configs, work directories and signals.

- `distillation`: `run_distillation`, a resumable distillation run.
- `assistant`: the teacher -> assistant -> student route.
- `checkpointing`, `distribute`: checkpoints with signals, strategies.
- `study`: the objective study (baselines against MiniLM).
"""
