"""`python -m minilm_tf.ops.native`: build (or find) the native kernels, print the path."""

import os
import sys

from minilm_tf.ops import native

if native.relation_kl_op() is None:
    sys.exit("native kernels unavailable (see the warning above)")
print(os.environ.get(native.LIBRARY_ENV) or native.library_path(native._compiler()))
