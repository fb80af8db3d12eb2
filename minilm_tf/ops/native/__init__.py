"""Native CPU kernels, compiled on the machine that runs them.

`relation_kl_op()` returns the `MiniLMRelationKL` op (relation_kl.cc) or None.
The library is built with the machine's C++ compiler against the installed
TensorFlow (`tf.sysconfig`) with `-march=native`, once per source, TensorFlow
version, compiler and CPU, into a cache directory (`$MINILM_TF_KERNEL_CACHE`,
default `~/.cache/minilm_tf/kernels`); `tools/setup.sh` builds it ahead of
time, otherwise the first use does (10-20 s). Without a compiler, or
with `MINILM_TF_NATIVE_KERNELS=0`, it returns None and callers use their
XLA implementation.

`$MINILM_TF_RELATION_KL_LIBRARY` names a library built elsewhere (e.g. the
Bazel target `//minilm_tf/ops/native:relation_kl.so`) to load instead of
compiling; one that does not load is an error, not a fallback.

    python -m minilm_tf.ops.native   # build (or find) the library, print its path
"""

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

import tensorflow as tf

_SOURCE = os.path.join(os.path.dirname(__file__), "relation_kl.cc")
_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-w"]
# A prebuilt library to load instead of compiling relation_kl.cc.
LIBRARY_ENV = "MINILM_TF_RELATION_KL_LIBRARY"


def _cpu_signature() -> str:
    """The CPU model and feature flags that `-march=native` compiles for."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def cache_dir() -> str:
    default = os.path.join(os.path.expanduser("~"), ".cache", "minilm_tf", "kernels")
    return os.environ.get("MINILM_TF_KERNEL_CACHE", default)


def library_path(compiler: str) -> str:
    """Where the library for this source, TensorFlow, compiler and CPU lives."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256()
    with open(_SOURCE, "rb") as f:
        source = f.read()
    for part in (source, tf.__version__.encode(), version.encode(),
                 " ".join(_FLAGS + tf.sysconfig.get_compile_flags()).encode(),
                 _cpu_signature().encode()):
        key.update(part)
        key.update(b"\0")
    return os.path.join(cache_dir(), f"relation_kl-{key.hexdigest()[:16]}.so")


def build(compiler: str) -> str:
    """Compiles relation_kl.cc unless already built; returns the library path."""
    path = library_path(compiler)
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Compile to a private name, then rename: concurrent builders (several
    # workers of one job) never load a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
    os.close(fd)
    command = [compiler, *_FLAGS, _SOURCE, "-o", tmp, *tf.sysconfig.get_compile_flags(),
               *tf.sysconfig.get_link_flags()]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(
                f"Compiling {_SOURCE} failed ({' '.join(command)}):\n{result.stderr[-4000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _load_prebuilt(path: str):
    """The op from the library named by `$MINILM_TF_RELATION_KL_LIBRARY`."""
    try:
        return tf.load_op_library(path).mini_lm_relation_kl
    except (OSError, tf.errors.NotFoundError, AttributeError) as e:
        raise RuntimeError(
            f"{LIBRARY_ENV}={path} cannot be loaded as the MiniLMRelationKL op library ({e}); "
            f"point it at a relation_kl.so built against this TensorFlow ({tf.__version__}) "
            "or unset it to compile the kernel from source.") from e


def _register_gradient() -> None:
    try:  # Its gradient is computed with it (see `relations.relation_loss`).
        tf.no_gradient("MiniLMRelationKL")
    except KeyError:  # registered by an earlier load in this process
        pass


@functools.cache
def relation_kl_op():
    """The compiled `MiniLMRelationKL` op, or None (see the module doc)."""
    if os.environ.get("MINILM_TF_NATIVE_KERNELS", "1") == "0":
        return None
    if os.environ.get(LIBRARY_ENV):
        op = _load_prebuilt(os.environ[LIBRARY_ENV])
        _register_gradient()
        return op
    compiler = _compiler()
    if compiler is None:
        logging.warning("minilm_tf: no C++ compiler found; the relation loss uses its XLA "
                        "implementation (install g++ for the faster CPU kernel).")
        return None
    try:
        op = tf.load_op_library(build(compiler)).mini_lm_relation_kl
    except (RuntimeError, OSError, tf.errors.NotFoundError, AttributeError) as e:
        logging.warning("minilm_tf: the native relation kernel is unavailable; using the XLA "
                        "implementation. %s", e)
        return None
    _register_gradient()
    return op
