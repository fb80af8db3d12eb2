"""Repositories generated from the project's virtualenv (`.venv`, made by tools/setup.sh).

`venv_python` registers the venv's interpreter as the Python toolchain, so
`py_test` and `py_binary` targets run with the pinned TensorFlow and Keras.
`venv_tensorflow` exposes the installed TensorFlow's headers, compile flags and
`libtensorflow_framework` (found through `tf.sysconfig`) to build custom ops
against, the way `minilm_tf.ops.native` compiles them with g++.

Both re-run when requirements.txt changes (a new TensorFlow); after
recreating the venv by other means, run `bazel sync --configure` or
`bazel clean --expunge`.
"""

def _venv_interpreter(ctx):
    # Resolving the labels makes the repository depend on these files.
    ctx.path(Label("//:requirements.txt"))
    root = ctx.path(Label("//:WORKSPACE")).dirname
    python = root.get_child(ctx.attr.venv).get_child("bin").get_child("python")
    if not python.exists:
        fail("%s not found: run `bash tools/setup.sh` first to create the venv." % python)
    return python

def _venv_python_impl(ctx):
    python = _venv_interpreter(ctx)
    ctx.file("BUILD", """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(name = "runtime_pair", py3_runtime = ":py3_runtime")

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(python = python))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    attrs = {"venv": attr.string(default = ".venv")},
    local = True,
)

_SYSCONFIG = """
import json, tensorflow as tf
print(json.dumps({
    "include": tf.sysconfig.get_include(),
    "lib": tf.sysconfig.get_lib(),
    "compile_flags": tf.sysconfig.get_compile_flags(),
    "link_flags": tf.sysconfig.get_link_flags(),
    "version": tf.__version__,
}))
"""

def _venv_tensorflow_impl(ctx):
    python = _venv_interpreter(ctx)
    result = ctx.execute([python, "-c", _SYSCONFIG], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.return_code:
        fail("Could not ask the venv's TensorFlow for its build flags:\n" + result.stderr)
    info = json.decode(result.stdout.strip().splitlines()[-1])
    libraries = [f[3:] for f in info["link_flags"] if f.startswith("-l:")]
    if len(libraries) != 1:
        fail("Expected one -l:LIBRARY in tf.sysconfig.get_link_flags(), got %s" % info["link_flags"])
    ctx.symlink(info["include"], "include")
    ctx.symlink(info["lib"] + "/" + libraries[0], libraries[0])
    copts = [f for f in info["compile_flags"] if not f.startswith("-I")]
    ctx.file("flags.bzl", "TF_VERSION = %r\nTF_COPTS = %r\n" % (info["version"], copts))
    ctx.file("BUILD", """\
# TensorFlow {version} from the project's venv: headers and framework library.
package(default_visibility = ["//visibility:public"])

# include/external (half the files: copies of TensorFlow's own build
# dependencies) is not what custom ops include; leaving it out halves analysis.
cc_library(
    name = "headers",
    hdrs = glob(["include/**"], exclude = ["include/external/**", "include/**/*.py"]),
    includes = ["include"],
)

cc_import(
    name = "framework",
    shared_library = "{library}",
)

cc_library(
    name = "tensorflow",
    deps = [":headers", ":framework"],
)
""".format(version = info["version"], library = libraries[0]))

venv_tensorflow = repository_rule(
    implementation = _venv_tensorflow_impl,
    attrs = {"venv": attr.string(default = ".venv")},
    local = True,
)
