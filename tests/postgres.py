"""The tests' PostgreSQL fixtures: a throwaway server for the session (`bot.testing.postgres`), or the one
TEST_DATABASE_URL names, and a fresh empty database (a schema) per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from bot.testing.postgres import cluster, new_database


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create schemas on; fails (never skips) without one."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(cluster())
        except RuntimeError as exc:
            failure = str(exc)
        else:
            failure = ""
        if failure:
            pytest.fail(failure, pytrace=False)
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh empty database for one test."""
    return new_database(postgres_server)
