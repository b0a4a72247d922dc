"""Slow statistical validation, skipped unless ``IPT_SLOW_TESTS=1``.

    IPT_SLOW_TESTS=1 .venv/bin/pytest tests/slow -q

The default test run collects these tests and reports them as skipped.
"""

from __future__ import annotations

import os

import pytest

RUN = os.environ.get("IPT_SLOW_TESTS", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests of this folder unless IPT_SLOW_TESTS is set."""
    del config
    skip = pytest.mark.skip(reason="slow statistical validation: set IPT_SLOW_TESTS=1")
    for item in items:
        if "tests/slow/" in str(item.fspath).replace(os.sep, "/") and not RUN:
            item.add_marker(skip)
