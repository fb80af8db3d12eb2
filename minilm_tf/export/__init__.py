"""Exporting fine-tuned task models and sentence encoders for serving.

* `load_source(path_or_spec)`: a `tools/finetune.py` workdir (classifier /
  regressor) or an encoder spec (sentence encoder) -> `ExportSource`.
* `export_saved_model(source, export_dir, model_name)`: TF Serving layout
  `<export_dir>/<model_name>/<version>/`, strings in (tokenised in the graph),
  plus a token-id signature; `verify_saved_model` checks it.
* `export_hf(encoder, directory)`: a BERT encoder as a Hugging Face /
  sentence-transformers model directory (config.json, model.safetensors,
  tokenizer files, modules.json ...); `keras_parity_reference` writes what
  Keras computes, for `tools/check_hf_parity.py` to compare in torch.
* `convert_tflite(source, mode, with_tokenizer)`: float32 / dynamic-range
  int8 / float16 / full-integer int8 TFLite, optionally with a tokenizer
  that runs on the pip LiteRT interpreter; `check_tflite` compares it with
  Keras.

See docs/export.md and tools/export_savedmodel.py, tools/export_tflite.py,
tools/export_hf.py, tools/benchmark_inference.py.
"""

from minilm_tf.export.hf import export_hf, keras_parity_reference
from minilm_tf.export.savedmodel import (
    SERVING_DEFAULT,
    TOKEN_IDS_SIGNATURE,
    TOKENIZE_SIGNATURE,
    export_saved_model,
    list_versions,
    make_predict_request,
    resolve_version,
    validate_predict_request,
)
from minilm_tf.export.source import (
    ExportSource,
    compute_outputs,
    encoder_source,
    keras_reference,
    load_source,
    task_source,
)
from minilm_tf.export.tflite import MODES as TFLITE_MODES
from minilm_tf.export.tflite import TFLiteRunner, check_tflite
from minilm_tf.export.tflite import convert as convert_tflite
from minilm_tf.export.verify import verify_saved_model

__all__ = [
    "SERVING_DEFAULT",
    "TFLITE_MODES",
    "TOKENIZE_SIGNATURE",
    "TOKEN_IDS_SIGNATURE",
    "ExportSource",
    "TFLiteRunner",
    "check_tflite",
    "compute_outputs",
    "convert_tflite",
    "encoder_source",
    "export_hf",
    "export_saved_model",
    "keras_parity_reference",
    "keras_reference",
    "list_versions",
    "load_source",
    "make_predict_request",
    "resolve_version",
    "task_source",
    "validate_predict_request",
    "verify_saved_model",
]
