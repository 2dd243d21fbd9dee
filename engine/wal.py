"""The update log: live changes to one version, durable before they are acknowledged.

``indexes/NAME/updates/<version>.log`` holds one line per acknowledged batch::

    <sha256 of the JSON, 64 hex> {"seq": 3, "ops": [{"op": "upsert", ...}, {"op": "delete", ...}]}

A batch is one ``write`` followed by ``fsync`` before the writer answers, so after an
acknowledged write a crash loses nothing. A crash *during* a write can leave a torn last line:
it was never acknowledged, so readers ignore it and the next writer truncates it away. A bad
line anywhere else means the file was damaged, and loading refuses it (:class:`BundleCorrupt`).

Upserts carry the vector (base64 of ``float32 (d,)``), so replaying needs no model. Versions are
immutable; the log belongs beside them, and a compaction folds it into a new version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.changes import Change, Delete, Upsert
from engine.errors import BundleCorrupt, VecrecError
from engine.fsutil import fsync_dir

UPDATES_DIR = "updates"
LOG_SUFFIX = ".log"


@dataclass(frozen=True)
class Batch:
    seq: int
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class LogState:
    """What a log holds: its complete batches, and the bytes they span (a torn tail excluded)."""

    batches: tuple[Batch, ...]
    size: int

    @property
    def last_seq(self) -> int:
        return self.batches[-1].seq if self.batches else 0


EMPTY = LogState((), 0)


def log_path(root: Path, version: str) -> Path:
    """The update log of ``version`` under the index root ``indexes/NAME``."""
    return root / UPDATES_DIR / f"{version}{LOG_SUFFIX}"


def _encode(change: Change) -> dict[str, Any]:
    if isinstance(change, Delete):
        return {"op": "delete", "id": change.id}
    vector = np.ascontiguousarray(change.vector, dtype="<f4")
    return {
        "op": "upsert",
        "id": change.id,
        "record": dict(change.record),
        "vector": base64.b64encode(vector.tobytes()).decode("ascii"),
    }


def _decode(raw: dict[str, Any], dimension: int) -> Change:
    if raw["op"] == "delete":
        return Delete(str(raw["id"]))
    if raw["op"] != "upsert":
        raise ValueError(f"unknown op {raw['op']!r}")
    vector = np.frombuffer(base64.b64decode(raw["vector"]), dtype="<f4").astype(np.float32)
    if vector.shape != (dimension,):
        raise ValueError(f"vector of {vector.size} floats, expected {dimension}")
    return Upsert(str(raw["id"]), dict(raw["record"]), vector)


def encode_line(seq: int, changes: Sequence[Change]) -> bytes:
    body = json.dumps(
        {"seq": seq, "ops": [_encode(c) for c in changes]},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")
    return hashlib.sha256(body).hexdigest().encode("ascii") + b" " + body + b"\n"


def _parse_line(line: bytes, dimension: int) -> Batch | None:
    """The batch on ``line``, or None when the line is not intact."""
    digest, _, body = line.partition(b" ")
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        return None
    try:
        raw = json.loads(body)
        return Batch(int(raw["seq"]), tuple(_decode(op, dimension) for op in raw["ops"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleCorrupt(f"update log entry is malformed: {exc}") from exc


def read_log(path: Path, dimension: int) -> LogState:
    """The intact batches of the log at ``path`` (none if it does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EMPTY
    pieces = data.split(b"\n")
    lines, tail = pieces[:-1], pieces[-1]  # ``tail``: bytes after the last newline (torn)
    batches: list[Batch] = []
    offset = 0
    for position, body in enumerate(lines):
        batch = _parse_line(body, dimension)
        if batch is None:
            if position == len(lines) - 1 and not tail:
                break  # a torn last write: it was never acknowledged
            raise BundleCorrupt(f"update log {path} is damaged before its end (byte {offset})")
        expected = batches[-1].seq + 1 if batches else batch.seq
        if batch.seq != expected:
            raise BundleCorrupt(f"update log {path}: batch {batch.seq} follows {expected - 1}")
        batches.append(batch)
        offset += len(body) + 1
    return LogState(tuple(batches), offset)


def append_batch(path: Path, state: LogState, changes: Sequence[Change]) -> LogState:
    """Append one batch after ``state`` (what the caller read under the writer lock) durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = encode_line(state.last_seq + 1, changes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, state.size)  # drops a torn tail left by a crash
        os.pwrite(fd, line, state.size)
        os.fsync(fd)
    finally:
        os.close(fd)
    if state.size == 0:
        fsync_dir(path.parent)
    return LogState(
        (*state.batches, Batch(state.last_seq + 1, tuple(changes))), state.size + len(line)
    )


def write_log(path: Path, batches: Iterable[Sequence[Change]]) -> None:
    """Write a fresh log holding ``batches`` (renumbered from 1), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        for seq, changes in enumerate(batches, start=1):
            fh.write(encode_line(seq, changes))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def logged_updates(root: Path) -> int:
    """Batches logged on the current version of index ``root`` (0 when none or no index)."""
    from engine.bundle import resolve_bundle_dir  # the bundle module builds on this one

    try:
        version = resolve_bundle_dir(root).name
    except VecrecError:
        return 0
    try:
        data = log_path(root, version).read_bytes()
    except FileNotFoundError:
        return 0
    return data.count(b"\n")
