"""The versions of a named index: list them, roll ``CURRENT`` back, delete old ones.

A version is a directory of ``indexes/NAME`` holding a ``manifest.json`` and not starting with
``.`` (hidden names are temporaries and the lock). Creation order is the manifest's
``created_at``; version names sort by second only, so two builds in one second would tie.

``rollback`` and ``gc`` change the index, so they hold its writer lock
(:mod:`engine.writer_lock`) like a build does.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.bundle import (
    CURRENT_FILE,
    TMP_PREFIX,
    Bundle,
    remove_stale_temporaries,
    set_current,
)
from engine.errors import BundleError, BundleNotFound, InvalidArgument
from engine.fsutil import fsync_dir
from engine.manifest import MANIFEST_FILE, Manifest
from engine.wal import log_path
from engine.writer_lock import writer_lock


@dataclass(frozen=True)
class VersionInfo:
    """One version directory, as its manifest describes it."""

    version: str
    path: Path
    created_at: str
    item_count: int | None
    model: str | None
    current: bool
    problem: str | None = None  # why the manifest could not be read, if it could not


@dataclass(frozen=True)
class IndexSummary:
    """One named index under an indexes directory."""

    name: str
    path: Path
    current: str | None
    versions: int
    item_count: int | None


@dataclass(frozen=True)
class RollbackResult:
    name: str
    previous: str | None
    current: str

    @property
    def changed(self) -> bool:
        return self.previous != self.current


@dataclass(frozen=True)
class GcResult:
    name: str
    deleted: tuple[str, ...]
    kept: tuple[str, ...]
    temporaries: tuple[str, ...]


def current_version(root: str | Path) -> str | None:
    """The version ``root/CURRENT`` names, or None when there is no usable pointer."""
    try:
        text = (Path(root) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    return text if text and "/" not in text and not text.startswith(".") else None


def _require_index_root(root: Path) -> None:
    if not root.is_dir():
        raise BundleNotFound(f"no index at {root}", field="name")
    if (root / MANIFEST_FILE).is_file():
        raise InvalidArgument(
            f"{root} is one version of an index; give the index (its parent directory)",
            field="name",
        )


def _describe(path: Path, current: str | None) -> tuple[tuple[dt.datetime, int, str], VersionInfo]:
    manifest_path = path / MANIFEST_FILE
    stat = manifest_path.stat()
    mtime = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
    try:
        manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
        created = dt.datetime.fromisoformat(manifest.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        info = VersionInfo(
            version=path.name,
            path=path,
            created_at=manifest.created_at,
            item_count=manifest.item_count,
            model=manifest.model.spec,
            current=path.name == current,
        )
    except (BundleError, ValueError, OSError) as exc:
        # Still listed (and collectable): a version nobody can read is exactly what gc is for.
        created = mtime
        info = VersionInfo(
            version=path.name,
            path=path,
            created_at=mtime.isoformat(timespec="seconds"),
            item_count=None,
            model=None,
            current=path.name == current,
            problem=str(exc),
        )
    # The manifest's mtime breaks ties between manifests written in the same second.
    return (created, stat.st_mtime_ns, path.name), info


def list_versions(root: str | Path) -> list[VersionInfo]:
    """Every version of the index at ``root`` (``indexes/NAME``), oldest first."""
    root = Path(root)
    _require_index_root(root)
    current = current_version(root)
    described = []
    for child in root.iterdir():
        if child.name.startswith(".") or not (child / MANIFEST_FILE).is_file():
            continue
        try:
            described.append(_describe(child, current))
        except FileNotFoundError:  # collected by a concurrent gc: listing takes no lock
            continue
    return [info for _, info in sorted(described, key=lambda pair: pair[0])]


def list_indexes(indexes_dir: str | Path) -> list[IndexSummary]:
    """The named indexes under ``indexes_dir``: every directory with a ``CURRENT`` or a version."""
    indexes_dir = Path(indexes_dir)
    if not indexes_dir.is_dir():
        return []
    out = []
    for child in sorted(indexes_dir.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or (child / MANIFEST_FILE).exists():
            continue
        versions = list_versions(child)
        if not versions and not (child / CURRENT_FILE).exists():
            continue
        current = current_version(child)
        now = next((v for v in versions if v.version == current), None)
        out.append(
            IndexSummary(
                name=child.name,
                path=child,
                current=current,
                versions=len(versions),
                item_count=now.item_count if now else None,
            )
        )
    return out


def rollback(root: str | Path, to: str | None = None) -> RollbackResult:
    """Point ``CURRENT`` at ``to``, by default at the version created just before the current
    one, after verifying it completely (checksums, shapes). Holds the writer lock."""
    root = Path(root)
    _require_index_root(root)
    with writer_lock(root):
        versions = list_versions(root)
        names = [v.version for v in versions]
        current = current_version(root)
        if to is None:
            if current not in names:
                raise InvalidArgument(
                    f"index {root.name!r} has no valid current version to roll back from; "
                    "name the version with --to",
                    field="to",
                )
            position = names.index(current)
            if position == 0:
                raise InvalidArgument(
                    f"index {root.name!r}: the current version {current} is the oldest; "
                    "there is nothing to roll back to",
                    field="to",
                )
            target = names[position - 1]
        elif to not in names:
            known = ", ".join(names) or "none"
            raise InvalidArgument(
                f"index {root.name!r} has no version {to!r} (versions: {known})", field="to"
            )
        else:
            target = to
        try:
            Bundle.load(root / target, verify=True)
        except BundleError as exc:
            raise type(exc)(
                f"refusing to roll back {root.name!r} to {target}: {exc}", field="to"
            ) from exc
        if target != current:
            set_current(root, target)
        return RollbackResult(name=root.name, previous=current, current=target)


def gc(root: str | Path, keep: int) -> GcResult:
    """Delete all but the newest ``keep`` versions, never the current one, and the leftovers of
    dead writers. Holds the writer lock, so no build can be writing meanwhile."""
    root = Path(root)
    if keep < 1:
        raise InvalidArgument(f"keep must be >= 1, got {keep}", field="keep")
    _require_index_root(root)
    with writer_lock(root):
        temporaries = remove_stale_temporaries(root)
        versions = list_versions(root)
        current = current_version(root)
        newest = {v.version for v in versions[-keep:]}
        doomed = [v.version for v in versions if v.version not in newest and v.version != current]
        for version in doomed:
            _delete_version(root, version)
        kept = tuple(v.version for v in versions if v.version not in doomed)
        return GcResult(
            name=root.name, deleted=tuple(doomed), kept=kept, temporaries=tuple(temporaries)
        )


def _delete_version(root: Path, version: str) -> None:
    # Renamed to a hidden temporary first: the version vanishes from listings in one atomic
    # step, and a gc killed half-way leaves a temporary the next build or gc removes, never a
    # half-deleted directory that looks like a version.
    hidden = root / f"{TMP_PREFIX}gc-{version}-{os.getpid()}"
    os.rename(root / version, hidden)
    fsync_dir(root)
    shutil.rmtree(hidden, ignore_errors=True)
    log_path(root, version).unlink(missing_ok=True)
