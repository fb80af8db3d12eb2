"""Text classification and regression: data, model, datasets.

- `data`: `Split`, `TaskData`, labels and their checks, building a task's data.
- `files`: reading local TSV / CSV / JSON-lines files.
- `registry`: tasks by name (built-in offline, GLUE through TFDS, local files): `load_task`.
- `model`: the keras-hub `TextClassifier` (or a generic head) and its preprocessor.
- `datasets`: `tf.data` pipelines, predictions and evaluation.
"""
