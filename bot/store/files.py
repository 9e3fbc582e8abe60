"""Files only their owner may read: what the bot keeps names chats and what they asked."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600

_umask_lock = threading.Lock()   # the umask is the process's: two threads restoring it in turn must not interleave


@contextmanager
def owner_only() -> Iterator[None]:
    """Files and directories created inside are readable by their owner alone (umask 077)."""
    with _umask_lock:
        previous = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(previous)


def restrict(paths: Iterable[Path]) -> None:
    """Make existing files (e.g. created 0644 by an earlier version) owner-only; missing ones are skipped."""
    for path in paths:
        try:
            os.chmod(path, PRIVATE)
        except FileNotFoundError:
            continue


def replace_privately(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write the file at `path` whole, readable by its owner only: into a temporary file beside it, then renamed
    over it, so that a reader (the next start) never sees half of it. OSError, leaving nothing behind, if not."""
    fresh = path.with_name(f".{path.name}.new")
    try:
        with owner_only():
            path.parent.mkdir(parents=True, exist_ok=True)
            with fresh.open("wb") as out:
                write(out)
        restrict([fresh])
        fresh.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            fresh.unlink(missing_ok=True)
        raise
