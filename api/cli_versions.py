"""``vecrec index list | rollback | gc``: thin commands over :mod:`engine.versions`."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from api.cli_common import positive_int, print_json
from engine import versions


def index_root(value: str, indexes_dir: Path) -> Path:
    """A bare name is an index under ``indexes_dir``; anything with a slash is a path.

    Unlike the query commands, a bare name never means a directory of the working directory:
    these commands change what they are pointed at.
    """
    return Path(value) if "/" in value else indexes_dir / value


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def cmd_index_list(args: argparse.Namespace) -> int:
    indexes_dir = Path(args.indexes_dir)
    if args.name is None:
        indexes = versions.list_indexes(indexes_dir)
        if args.json:
            print_json([asdict(i) for i in indexes])
            return 0
        if not indexes:
            print(f"no indexes in {indexes_dir}")
        for i in indexes:
            items = "-" if i.item_count is None else f"{i.item_count:,d} items"
            print(
                f"{i.name:<24} current {i.current or '-':<24} {items:>14}  "
                f"{_count(i.versions, 'version', 'versions')}"
            )
        return 0
    listed = versions.list_versions(index_root(args.name, indexes_dir))
    if args.json:
        print_json([asdict(v) for v in listed])
        return 0
    print(f"  {'version':<24} {'created':<30} {'items':>9}  model")
    for v in listed:
        mark = "*" if v.current else " "
        items = "-" if v.item_count is None else f"{v.item_count:,d}"
        note = f"  unreadable: {v.problem}" if v.problem else ""
        print(f"{mark} {v.version:<24} {v.created_at:<30} {items:>9}  {v.model or '-'}{note}")
    return 0


def cmd_index_rollback(args: argparse.Namespace) -> int:
    result = versions.rollback(index_root(args.name, Path(args.indexes_dir)), args.to)
    if args.json:
        print_json({**asdict(result), "changed": result.changed})
    elif result.changed:
        print(f"{result.name}: current version is now {result.current} (was {result.previous})")
    else:
        print(f"{result.name}: {result.current} is already the current version")
    return 0


def cmd_index_gc(args: argparse.Namespace) -> int:
    result = versions.gc(index_root(args.name, Path(args.indexes_dir)), args.keep)
    if args.json:
        print_json(asdict(result))
        return 0
    print(
        f"{result.name}: deleted {_count(len(result.deleted), 'version', 'versions')}, "
        f"kept {len(result.kept)}, removed "
        f"{_count(len(result.temporaries), 'stale temporary', 'stale temporaries')}"
    )
    for version in result.deleted:
        print(f"deleted    {version}")
    for name in result.temporaries:
        print(f"removed    {name}")
    return 0


def register(index_sub: argparse._SubParsersAction) -> None:
    """Add the version-management commands under ``vecrec index``."""
    ls = index_sub.add_parser("list", help="list indexes, or the versions of one index")
    ls.add_argument("name", nargs="?", default=None, help="index name or path")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_index_list)

    rb = index_sub.add_parser(
        "rollback", help="point an index back at an earlier version (after verifying it)"
    )
    rb.add_argument("name", help="index name or path")
    rb.add_argument(
        "--to", default=None, help="version to use (default: the one before the current)"
    )
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_index_rollback)

    gc = index_sub.add_parser(
        "gc", help="delete old versions (never the current one) and stale temporaries"
    )
    gc.add_argument("name", help="index name or path")
    gc.add_argument(
        "--keep", type=positive_int, required=True, help="how many of the newest versions to keep"
    )
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_index_gc)
