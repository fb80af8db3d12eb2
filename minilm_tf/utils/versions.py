"""The versions of the libraries a result depends on, for reports."""

import importlib

LIBRARIES = ("tensorflow", "keras", "keras_hub", "tensorflow_text")


def library_versions(names=LIBRARIES) -> dict:
    """{module name: version} of those of `names` that are installed."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return out
