"""Everything that must survive a restart, on SQLite (one instance) or PostgreSQL (several replicas).

`Store(path)` opens the SQLite file (":memory:" too); `open_store` picks PostgreSQL when a DATABASE_URL is
given. Both backends run the same SQL in `core.Store`, so they behave the same.
"""

from __future__ import annotations

from pathlib import Path

from bot.store.core import Stats, Store, StoreError, Subscription, normalise_words

__all__ = ["Stats", "Store", "StoreError", "Subscription", "normalise_words", "open_store"]


def open_store(database_url: str | None, database_path: Path, *, timeout: float = 1.0) -> Store:
    """PostgreSQL when `database_url` is given (postgresql://…), else the SQLite file at `database_path`."""
    if database_url:
        from bot.store.postgres import PostgresBackend  # psycopg is loaded only by those who use it

        return Store.on(PostgresBackend(database_url, timeout=timeout))
    return Store(database_path, timeout=timeout)
