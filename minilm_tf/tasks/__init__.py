"""Downstream tasks: their data, models, metrics and post-processing; no run loops.

- `classification/`: text classification and regression.
- `question_answering/`: extractive QA (SQuAD v1.1 / v2.0).
- `generation/`: sequence-to-sequence generation (UniLM's mask).
- `finetuned`: what a fine-tuning run leaves behind, and loading it back.
- `latency`, `metrics`: measured the same way for every task.
"""
