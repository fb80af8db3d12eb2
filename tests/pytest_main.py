"""Entry point of the Bazel `pytest_test` targets: pytest on the files given.

Runs the default selection (`-m "not slow"`, as the README's test command).
"""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-m", "not slow", *sys.argv[1:]]))
