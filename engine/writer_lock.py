"""One writer per index: an exclusive, non-blocking ``flock`` on ``indexes/NAME/.lock``.

Every operation that changes an index (build, rollback, gc) runs inside :func:`writer_lock`.
Readers never take it: versions are immutable and ``CURRENT`` is replaced atomically, so a reader
needs no coordination with a writer.

``flock`` belongs to the open file, so the kernel drops it when the holder exits for any reason,
``SIGKILL`` included: a dead writer can never leave the index locked. The lock file itself is
never deleted; unlinking it would let a waiter lock an orphaned inode while a newcomer locks a
fresh file, and both would believe they are the only writer.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import IndexLocked

LOCK_FILE = ".lock"


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, for the error message (best effort)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


@contextmanager
def writer_lock(root: str | Path) -> Iterator[None]:
    """Hold the writer lock of the index at ``root`` (``indexes/NAME``) for the ``with`` block.

    Fails at once with :class:`IndexLocked` when another writer holds it: waiting would stack
    builds behind each other, and the second one would overwrite the first one's work anyway.
    Creates ``root`` if needed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLocked(
                f"index {root.name!r} is locked: another writer{_holder(fd)} is building, "
                f"rolling back or collecting it ({root / LOCK_FILE}); try again when it has "
                "finished",
                field="name",
            ) from None
        # The pid is only a hint for the message above; the lock is the flock, not the content.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)
