"""Test doubles the tests and the benchmarks share: a fake Telegram Bot API server on 127.0.0.1 (needs aiohttp, from
the `test` extra) and a throwaway PostgreSQL server (needs Debian's `postgresql` package)."""
