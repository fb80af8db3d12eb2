"""`python -m minilm_tf.kernels`: build (or find) the native kernels, print the path."""

import os
import sys

from minilm_tf import kernels

if kernels.relation_kl_op() is None:
    sys.exit("native kernels unavailable (see the warning above)")
print(os.environ.get(kernels.LIBRARY_ENV) or kernels.library_path(kernels._compiler()))
