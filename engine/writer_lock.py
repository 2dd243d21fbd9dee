"""One writer per index: an exclusive, non-blocking ``flock`` on ``indexes/NAME/.lock``.

Every operation that changes an index (build, rollback, gc) runs inside :func:`writer_lock`.
Readers never take it: versions are immutable and ``CURRENT`` is replaced atomically, so a reader
needs no coordination with a writer.

``flock`` belongs to the open file, so the kernel drops it when the holder exits for any reason,
``SIGKILL`` included: a dead writer can never leave the index locked.

The lock file stays once the index has versions. Only a directory that holds nothing but the
lock (a first build that failed) is removed on release, so a failed command leaves no trace. A
process that opened the file just before that removal would lock an orphaned inode while a
newcomer locks a fresh file; so after locking, the holder checks that its file is still the one
at the path, and starts again if not.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from engine.errors import IndexLocked

LOCK_FILE = ".lock"
# Each retry means another process removed the directory in between: a few suffice.
_ATTEMPTS = 5


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, for the error message (best effort)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _locked_message(root: Path, holder: str) -> str:
    return (
        f"index {root.name!r} is locked: another writer{holder} is building, rolling back or "
        f"collecting it ({root / LOCK_FILE}); try again when it has finished"
    )


def _missing_dirs(root: Path) -> list[Path]:
    """``root`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    for path in (root, *root.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _acquire(root: Path) -> int:
    for _ in range(_ATTEMPTS):
        root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the directory vanished between mkdir and open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise IndexLocked(_locked_message(root, holder), field="name") from None
        held = os.fstat(fd)
        try:
            now = os.stat(root / LOCK_FILE)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)
    raise IndexLocked(_locked_message(root, ""), field="name")


@contextmanager
def writer_lock(root: str | Path) -> Iterator[None]:
    """Hold the writer lock of the index at ``root`` (``indexes/NAME``) for the ``with`` block.

    Fails at once with :class:`IndexLocked` when another writer holds it: waiting would stack
    builds behind each other, and the second one would overwrite the first one's work anyway.
    Creates ``root`` if needed, and removes it again if it is left holding only the lock.
    """
    root = Path(root)
    created = _missing_dirs(root)
    fd = _acquire(root)
    try:
        # The pid is only a hint for the message above; the lock is the flock, not the content.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        # Still holding the lock: nobody can be adding a version meanwhile. Best effort, and
        # never in the way of the exception that may be on its way out.
        with suppress(OSError):
            if [p.name for p in root.iterdir()] == [LOCK_FILE]:
                (root / LOCK_FILE).unlink()
                for directory in created:
                    directory.rmdir()  # fails, and stops, at one that is not empty
        os.close(fd)
