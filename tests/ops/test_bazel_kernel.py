"""The relation kernel Bazel builds is the one the package loads.

`bazel test //tests:test_bazel_kernel` points `$MINILM_TF_RELATION_KL_LIBRARY`
at `//minilm_tf/ops/native:relation_kl.so`; `native.relation_kl_op()` must load
that file (not compile its own) and compute bit for bit what the package's own
g++ build computes. Plain pytest has no Bazel-built library and skips this
file; `//tests:test_relation_kernel` checks the same library against numpy.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from relation_reference import make

from minilm_tf.ops import native
from minilm_tf.losses import relations

LIBRARY = os.environ.get(native.LIBRARY_ENV)
pytestmark = pytest.mark.skipif(
    not LIBRARY, reason=f"no Bazel-built library in ${native.LIBRARY_ENV} (bazel test runs this)")

HEADS = 6

# Computes the op's outputs with the package's own build (no prebuilt library)
# on the inputs in argv[1]; writes them and the library it loaded to argv[2].
_OWN_BUILD = """
import sys
import numpy as np
import tensorflow as tf
from minilm_tf.ops import native
op = native.relation_kl_op()
x = np.load(sys.argv[1])
out = {}
for symmetric in (False, True):
    b = ("ta", "sa") if symmetric else ("tb", "sb")
    loss, ga, gb = op(x["ta"], x[b[0]], x["sa"], x[b[1]], tf.constant(x["mask"]),
                      num_heads=int(x["heads"]), symmetric=symmetric)
    for name, value in (("loss", loss), ("ga", ga), ("gb", gb)):
        out[f"{name}_{symmetric}"] = value.numpy()
np.savez(sys.argv[2], library=native.library_path(native._compiler()), **out)
"""


def _inputs():
    b, t = 3, 37
    rng = np.random.default_rng(7)
    mask = (rng.random((b, t)) < 0.8).astype("float32")
    mask[0] = 1
    return {"ta": make(b, t, 48, 1, 2.0), "tb": make(b, t, 48, 2, 2.0),
            "sa": make(b, t, 36, 3, 1.5), "sb": make(b, t, 36, 4, 1.5),
            "mask": mask, "heads": np.array(HEADS)}


def _loaded_libraries() -> str:
    with open("/proc/self/maps", encoding="utf-8") as f:
        return f.read()


def test_package_loads_the_bazel_library():
    # The package itself is the py_library's copy in the test's runfiles.
    assert native.__file__.startswith(os.environ["TEST_SRCDIR"])
    op = native.relation_kl_op()
    assert op is not None
    maps = _loaded_libraries()
    assert os.path.realpath(LIBRARY) in maps
    # The package compiled and loaded nothing of its own (its builds are relation_kl-<key>.so).
    assert "relation_kl-" not in maps
    # relation_loss(implementation="native") runs it.
    x = _inputs()
    via_loss = relations.relation_loss(x["ta"], x["tb"], x["sa"], x["sb"], HEADS, x["mask"],
                                       implementation="native")
    direct = op(x["ta"], x["tb"], x["sa"], x["sb"], tf.constant(x["mask"]), num_heads=HEADS,
                symmetric=False)[0]
    np.testing.assert_array_equal(via_loss.numpy(), direct.numpy())


def test_same_results_as_the_package_build(tmp_path):
    x = _inputs()
    np.savez(tmp_path / "inputs.npz", **x)
    env = {k: v for k, v in os.environ.items() if k != native.LIBRARY_ENV}
    subprocess.run([sys.executable, "-c", _OWN_BUILD, str(tmp_path / "inputs.npz"),
                    str(tmp_path / "own.npz")], env=env, check=True, timeout=600)
    own = np.load(tmp_path / "own.npz")
    assert os.path.realpath(str(own["library"])) != os.path.realpath(LIBRARY)
    op = native.relation_kl_op()
    for symmetric in (False, True):
        b = ("ta", "sa") if symmetric else ("tb", "sb")
        got = op(x["ta"], x[b[0]], x["sa"], x[b[1]], tf.constant(x["mask"]), num_heads=HEADS,
                 symmetric=symmetric)
        for name, value in zip(("loss", "ga", "gb"), got, strict=True):
            want = own[f"{name}_{symmetric}"]
            assert value.shape == want.shape
            np.testing.assert_array_equal(value.numpy(), want, err_msg=f"{name} {symmetric}")
        assert got[0].numpy()[0] > 0  # a real loss, not zeros on both sides
