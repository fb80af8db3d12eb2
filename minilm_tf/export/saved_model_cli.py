"""TensorFlow's `saved_model_cli` with the tensorflow-text ops registered.

The exported SavedModels tokenise in the graph with tensorflow-text ops,
which plain `saved_model_cli run` cannot execute ("Op type not registered
'FastWordpieceTokenizeWithOffsets'") because it never imports
tensorflow_text. This wrapper imports it first and then runs the real tool
with the same arguments:

    python -m minilm_tf.export.saved_model_cli show --dir EXPORT/1 --all
    python -m minilm_tf.export.saved_model_cli run --dir EXPORT/1 \\
        --tag_set serve --signature_def serving_default \\
        --input_exprs 'text=["a great movie", ""]'
"""

import sys

import tensorflow_text  # noqa: F401  (registers the ops)

from minilm_tf import _compat


def main():
    sys.argv[0] = "saved_model_cli"
    return _compat.saved_model_cli().main()


if __name__ == "__main__":
    sys.exit(main())
