"""A view-model session for UI unit tests: no window, no supervisor (nothing listens on
the port it names, so no job is ever submitted). Import its fixture into a test module:
``from tests.unit.ui_fixtures import session_fixture  # noqa: F401``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ui_seed import models

__all__ = ["session_fixture"]


@pytest.fixture(name="session")
def session_fixture() -> Iterator[models.Session]:
    sess = models.Session("tcp://127.0.0.1:9", deliver=models.Mailbox(), threads=1)
    try:
        yield sess
    finally:
        sess.close()
