"""Paths the tests share: the repository, its tools and the test fixtures."""

import os

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
TOOLS_DIR = os.path.join(REPO_ROOT, "tools")
FIXTURES_DIR = os.path.join(TESTS_DIR, "fixtures")
HELPERS_DIR = os.path.join(TESTS_DIR, "helpers")
