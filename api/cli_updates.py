"""``vecrec index update | compact``: live changes to an index from files, and their folding."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from api.cli_common import add_table_options, positive_int, print_json
from api.cli_versions import index_root
from engine import Bundle, load_embedder
from engine.bundle import plain_value
from engine.changes import ItemFields
from engine.compaction import compact
from engine.errors import CatalogError
from engine.tables import TableFormat, ids_as_strings, read_table, require_columns
from engine.writes import CompactionPolicy, commit, pending_changes, prepare

# A batch is one line of the update log and one in-memory snapshot: big enough to amortise the
# snapshot's O(n) copy, small enough to keep a log line (vectors in base64) a few MiB.
DEFAULT_BATCH = 1000
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"}


def read_upserts(path: Path, id_column: str, table_format: TableFormat) -> list[ItemFields]:
    """Rows of a catalogue-like file as items: ``id_column``, an optional ``text``, fields."""
    frame = read_table(path, table_format, string_columns=[id_column])
    require_columns(frame, [id_column], f"upsert file {path}", "id_column")
    ids = ids_as_strings(frame[id_column])
    if ids.isna().any():
        raise CatalogError(f"upsert file {path} has rows without {id_column!r}", field="upsert")
    items = []
    for item_id, record in zip(
        ids, frame.drop(columns=[id_column]).to_dict("records"), strict=True
    ):
        fields = {str(k): plain_value(v) for k, v in record.items()}
        text = fields.pop("text", None)
        items.append(ItemFields(str(item_id), fields, None if text is None else str(text)))
    return items


def read_deletes(path: Path, id_column: str, table_format: TableFormat) -> list[str]:
    """Ids to delete: a table's ``id_column``, or one id per line of any other file."""
    if path.suffix.lower() in TABLE_SUFFIXES:
        frame = read_table(path, table_format, string_columns=[id_column])
        require_columns(frame, [id_column], f"delete file {path}", "id_column")
        return [str(i) for i in ids_as_strings(frame[id_column]).dropna()]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CatalogError(
            f"cannot read delete file {path}: {exc.strerror}", field="delete"
        ) from exc
    return [line.strip() for line in lines if line.strip()]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def cmd_index_update(args: argparse.Namespace) -> int:
    root = index_root(args.name, Path(args.indexes_dir))
    if not args.upsert and not args.delete:
        raise CatalogError("give --upsert FILE and/or --delete FILE", field="upsert")
    bundle = Bundle.load(root)
    id_column = args.id_column or str(bundle.manifest.source.get("id_column") or "id")
    table_format = TableFormat(args.format, args.delimiter, args.encoding)
    upserts = read_upserts(Path(args.upsert), id_column, table_format) if args.upsert else []
    deletes = read_deletes(Path(args.delete), id_column, table_format) if args.delete else []
    embedder = load_embedder(args.model or bundle.manifest.model.spec, threads=args.threads)
    totals = {"created": 0, "replaced": 0, "deleted": 0, "missing": 0, "batches": 0}
    # Upserts first, then deletes: a file pair that both adds and removes an id ends removed.
    work: list[tuple[Sequence[ItemFields], Sequence[str]]] = [
        (chunk, []) for chunk in _chunks(upserts, args.batch_size)
    ] + [([], chunk) for chunk in _chunks(deletes, args.batch_size)]
    for chunk_upserts, chunk_deletes in work:
        prepared = prepare(bundle, chunk_upserts, chunk_deletes, embedder)
        bundle = commit(bundle, prepared.changes)
        for key in ("created", "replaced", "deleted", "missing"):
            totals[key] += len(getattr(prepared, key))
        totals["batches"] += 1
    policy = CompactionPolicy(args.compact_fraction, args.compact_min_changes)
    compaction = None if args.no_compact or not policy.due(bundle) else compact(root, bundle)
    result = {
        "index": str(root),
        "version": bundle.manifest.version,
        **totals,
        "items": bundle.live_count,
        "pending_updates": 0 if compaction else pending_changes(bundle),
        "compacted_to": compaction.path.name if compaction else None,
    }
    if args.json:
        print_json(result)
        return 0
    print(
        f"{root.name}: {totals['created']} created, {totals['replaced']} replaced, "
        f"{totals['deleted']} deleted ({totals['missing']} ids to delete not found) in "
        f"{totals['batches']} logged batches; {bundle.live_count:,d} items"
    )
    if compaction is not None:
        print(f"compacted into version {compaction.path.name} ({compaction.folded} changes folded)")
    else:
        print(f"{pending_changes(bundle)} changes pending compaction")
    return 0


def cmd_index_compact(args: argparse.Namespace) -> int:
    root = index_root(args.name, Path(args.indexes_dir))
    bundle = Bundle.load(root)
    pending = pending_changes(bundle)
    if pending == 0 and not args.force:
        if args.json:
            print_json({"compacted": False, "version": bundle.manifest.version})
        else:
            print(f"{root.name}: version {bundle.manifest.version} has no live updates to compact")
        return 0
    result = compact(root, bundle)
    if args.json:
        print_json(
            {
                "compacted": True,
                "version": result.path.name,
                "items": result.items,
                "folded": result.folded,
                "carried": result.carried,
            }
        )
    else:
        print(
            f"{root.name}: compacted {bundle.manifest.version} into {result.path.name} "
            f"({result.items:,d} items, {result.folded} changes folded)"
        )
    return 0


def register(index_sub: argparse._SubParsersAction) -> None:
    """Add ``update`` and ``compact`` under ``vecrec index``."""
    up = index_sub.add_parser(
        "update",
        help="upsert and delete items of an index (logged durably; no rebuild)",
        description="Upserted rows are composed into text with the index's template (or take "
        "a 'text' column as is) and embedded with the index's model; list columns are split "
        "as the build split them.",
    )
    up.add_argument("name", help="index name or path")
    up.add_argument("--upsert", default=None, help="items to insert or replace (csv/jsonl/parquet)")
    up.add_argument(
        "--delete", default=None, help="ids to delete: one per line, or a table's id column"
    )
    up.add_argument("--id-column", default=None, help="default: the build's id column")
    up.add_argument("--model", default=None, help="default: the index's model")
    up.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    up.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH)
    up.add_argument("--no-compact", action="store_true", help="never compact after the update")
    up.add_argument("--compact-fraction", type=float, default=CompactionPolicy.fraction)
    up.add_argument(
        "--compact-min-changes", type=positive_int, default=CompactionPolicy.min_changes
    )
    up.add_argument("--json", action="store_true")
    add_table_options(up)
    up.set_defaults(func=cmd_index_update)

    co = index_sub.add_parser(
        "compact", help="fold live updates into a new version (tombstones removed)"
    )
    co.add_argument("name", help="index name or path")
    co.add_argument("--force", action="store_true", help="write a new version even with no updates")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_index_compact)
