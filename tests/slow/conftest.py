"""Slow statistical validation: every test here is marked ``slow``, which the default run
deselects (``addopts = -m 'not slow'`` in pyproject.toml). Run them with
``make validate-stats`` (``pytest -m slow tests/slow``)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this folder as slow."""
    del config
    for item in items:
        if "tests/slow/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
