"""Text classification and regression: data, model, datasets.

- `data`: reading tasks (built-in, GLUE through TFDS, local files), labels.
- `model`: the keras-hub `TextClassifier` (or a generic head) and its preprocessor.
- `datasets`: `tf.data` pipelines, predictions and evaluation.
"""
