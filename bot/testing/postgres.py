"""A throwaway PostgreSQL server for a test run or a benchmark, and a fresh empty database on it.

`initdb` and `pg_ctl` from Debian's `postgresql` package start a private cluster in a temporary directory,
listening on a free port of 127.0.0.1 and on a unix socket in that directory; it is stopped and deleted at the end
of the session. PostgreSQL refuses to run as root, so as root (CI, containers) the server runs as the `postgres`
system user the package creates. `tests/postgres.py` holds the tests' fixtures (TEST_DATABASE_URL points
them at a server of your own instead).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg

INSTALL_HINT = ("PostgreSQL is not installed, and the store's tests need a real server: install Debian's "
                "`postgresql` package (apt-get install -y postgresql), or set TEST_DATABASE_URL to a server "
                "where the tests may create schemas.")

_names = itertools.count(1)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[str]:
    """A running throwaway server; yields the URL of its `postgres` database as the superuser `postgres`.

    Not `durable`: fsync off, as the data dies with the run anyway (tests); durable: the server's defaults
    (benchmarks, so figures mean what they would in production).
    """
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError(INSTALL_HINT)
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if os.geteuid() == 0:   # initdb refuses root: the package's own system user runs the server
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(f"running as root, with no `postgres` user to run the server: {INSTALL_HINT}") from None
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "server.log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        log = base / "server.log"
        detail = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}{detail}") from exc
    try:
        yield f"postgresql://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def new_database(server_url: str) -> str:
    """The URL of a fresh, empty database on the server for one test.

    A schema of its own, named first on the search path, rather than a CREATE DATABASE each (most of a
    second apiece): the store names no schema, so it sees exactly the tables of this one.
    """
    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    parts = urllib.parse.urlsplit(server_url)
    query = [*urllib.parse.parse_qsl(parts.query), ("options", f"-c search_path={name}")]
    return parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)).geturl()
