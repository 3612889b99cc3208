"""Shared fixtures: real storages, real kernels, and condition waits (never sleeps).

``db`` is a real FileStorage image in a temporary folder, bootstrapped;
``kernel`` runs messages against it. Everything opened here is closed on
teardown, even when a test fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from uvm import Kernel, bootstrap, open_db


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it answers something true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@pytest.fixture
def image_path(tmp_path: Path) -> Path:
    return tmp_path / "live_image.fs"


@pytest.fixture
def db(image_path: Path) -> Iterator[Any]:
    database = open_db(image_path)
    bootstrap(database)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def kernel(db: Any) -> Kernel:
    return Kernel(db)
