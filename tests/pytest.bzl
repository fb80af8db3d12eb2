"""`pytest_test`: test files run by pytest as a Bazel py_test."""

load("@rules_python//python:defs.bzl", "py_test")

def pytest_test(name, srcs = None, deps = [], data = [], **kwargs):
    """A py_test running pytest on `srcs` (default `<name>.py`) with the package.

    Args:
      name: the target name, usually the test file's name without `.py`.
      srcs: the test files; other test modules they import go in `deps`.
      deps: more py_library targets; //:minilm_tf is always there.
      data: files the tests read.
      **kwargs: passed to py_test (size, env, tags...).
    """
    srcs = srcs or [name + ".py"]
    py_test(
        name = name,
        srcs = ["pytest_main.py"] + srcs,
        main = "pytest_main.py",
        args = ["$(rootpath %s)" % src for src in srcs],
        python_version = "PY3",
        deps = ["//:minilm_tf"] + deps,
        data = ["conftest.py", "//:pyproject.toml"] + data,
        **kwargs
    )
