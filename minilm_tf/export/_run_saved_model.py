"""Subprocess helper: `python -m minilm_tf.export._run_saved_model DIR IN.npz OUT.npz`.

Loads the SavedModel in this fresh process (only TensorFlow and
tensorflow-text imported: no Keras model, no minilm_tf layers), makes the
calls listed in IN.npz (keys `call|signature|input`) and writes the outputs
to OUT.npz (keys `call|output`).
"""

import sys

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops)


def main(argv):
    path, request, result = argv[1:4]
    loaded = tf.saved_model.load(path)
    calls = {}
    with np.load(request, allow_pickle=True) as data:
        for key in data.files:
            call, sig, name = key.split("|", 2)
            calls.setdefault((call, sig), {})[name] = data[key]
    out = {}
    for (call, sig), args in calls.items():
        fn = loaded.signatures[sig]
        specs = fn.structured_input_signature[1]
        tensors = {}
        for k, v in args.items():
            if specs[k].dtype == tf.string:
                tensors[k] = tf.constant(list(v), dtype=tf.string, shape=[len(v)])
            else:
                tensors[k] = tf.constant(v, dtype=specs[k].dtype)
        for name, value in fn(**tensors).items():
            out[f"{call}|{name}"] = value.numpy()
    np.savez(result, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
