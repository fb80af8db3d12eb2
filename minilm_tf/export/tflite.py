"""TFLite conversion (float32, dynamic-range int8, float16, full-integer
int8), the LiteRT runner, and the checks `tools/export_tflite.py` reports.

One job per module, all reached from here (`from minilm_tf.export import
tflite as tl`):

* `minilm_tf.export.tflite_convert`: `convert(source, mode, with_tokenizer)`
  and the converted model's signature (strings in with the tensorflow-text
  custom ops, padded ids in, or one unpadded example for full-integer int8),
  `write_model`;
* `minilm_tf.export.tflite_runtime`: `load_interpreter`, `TFLiteRunner`
  (batches, padding stripped for int8), `op_summary`, batch-1 latency;
* `minilm_tf.export.tflite_check`: `check_tflite` / `compare_main_outputs`
  against the Keras model.
"""

from minilm_tf.export.tflite_check import check_tflite, compare_main_outputs
from minilm_tf.export.tflite_convert import (
    MODE_HELP,
    MODES,
    UNPADDED_INPUTS,
    ConversionResult,
    convert,
    convert_tokenizer_only,
    representative_features,
    unpad,
    write_model,
)
from minilm_tf.export.tflite_runtime import (
    TFLiteRunner,
    load_interpreter,
    measure_latency,
    op_summary,
    tflite_latency,
    tkn_bytes,
)

__all__ = [
    "MODES",
    "MODE_HELP",
    "UNPADDED_INPUTS",
    "ConversionResult",
    "TFLiteRunner",
    "check_tflite",
    "compare_main_outputs",
    "convert",
    "convert_tokenizer_only",
    "load_interpreter",
    "measure_latency",
    "op_summary",
    "representative_features",
    "tflite_latency",
    "tkn_bytes",
    "unpad",
    "write_model",
]
