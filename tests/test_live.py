"""Live updates: upserts and deletes on Flat, IVF and HNSW bundles, durable across restarts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import Bundle, BundleCorrupt, HashEmbedder, IndexLocked, InvalidArgument, Recommender
from engine.changes import ItemFields
from engine.compaction import compact, compacted_content, finish
from engine.errors import UnknownItem
from engine.filters import Filter
from engine.usermodel import HistoryEvent
from engine.wal import log_path, read_log
from engine.writer_lock import writer_lock
from engine.writes import CompactionPolicy, commit, pending_changes, prepare, update_index
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build

N_ITEMS = 600
# "HNSW16,SQfp16": the graph `--factory auto` builds (half-precision vectors); "hnswlib16": the
# hnswlib graph (read whole, never mapped).
FACTORIES = ("Flat", "IVF16,Flat", "HNSW16", "HNSW16,SQfp16", "hnswlib16")
NEW_TEXT = "Quantum Lighthouse Keepers (2031). Genres: Sci-Fi, Mystery."


def embedder() -> HashEmbedder:
    return HashEmbedder(64)


def make_index(directory: Path, factory: str, name: str = "live") -> Path:
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    directory.mkdir(parents=True, exist_ok=True)
    catalog = movies_slice(directory, movies["movieId"][:N_ITEMS].tolist())
    build(sample_build(directory / "indexes", catalog, name, factory=factory), embedder())
    return directory / "indexes" / name


def open_recommender(root: Path) -> Recommender:
    return Recommender(Bundle.load(root), embedder())


def ids_of(results: object) -> list[str]:
    return [item.id for item in results.items]  # type: ignore[attr-defined]


def upsert(root: Path, item_id: str, **fields: object) -> None:
    update_index(root, [ItemFields(item_id, fields)], [], embedder(), policy=None)


def delete(root: Path, *item_ids: str) -> None:
    update_index(root, [], list(item_ids), embedder(), policy=None)


@pytest.fixture(params=FACTORIES)
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return make_index(tmp_path, str(request.param))


def test_upsert_then_search_finds_it_and_a_restart_keeps_it(index: Path) -> None:
    upsert(index, "new-1", title="Quantum Lighthouse Keepers (2031)", genres="Sci-Fi|Mystery")
    for recommender in (open_recommender(index), open_recommender(index)):  # the second: restart
        hit = recommender.search(NEW_TEXT, k=5).items[0]
        assert hit.id == "new-1"
        assert hit.text == NEW_TEXT  # rendered with the bundle's template, lists split by "|"
        assert hit.metadata["genres"] == ["Sci-Fi", "Mystery"]
        assert recommender.get("new-1").id == "new-1"
        only_scifi = recommender.search(NEW_TEXT, k=3, filters=[Filter("genres", eq="Mystery")])
        assert ids_of(only_scifi)[0] == "new-1"
        assert "new-1" in ids_of(recommender.similar("1", k=N_ITEMS))


def test_deleted_items_never_come_back_in_any_query_even_after_restart(index: Path) -> None:
    before = open_recommender(index)
    texts = before.bundle.items["text"].tolist()
    doomed = [str(i) for i in before.bundle.ids[[0, 7, 300, 599]]]
    delete(index, *doomed)
    for recommender in (open_recommender(index), open_recommender(index)):
        assert recommender.bundle.live_count == N_ITEMS - len(doomed)
        for row in (0, 7, 300, 599, 42):
            found = ids_of(recommender.search(texts[row], k=N_ITEMS))
            assert not set(doomed) & set(found)
            assert len(found) == N_ITEMS - len(doomed)  # everything else is still there
        history = [HistoryEvent("2"), HistoryEvent("3")]
        assert not set(doomed) & set(ids_of(recommender.recommend(history, k=N_ITEMS - 10)))
        assert not set(doomed) & set(ids_of(recommender.similar("2", k=N_ITEMS - 10)))
        popular = recommender.recommend([], None, k=N_ITEMS - 10)
        assert popular.source == "popularity" and not set(doomed) & set(ids_of(popular))
        for item_id in doomed:
            with pytest.raises(UnknownItem):
                recommender.get(item_id)


def test_replacing_an_item_moves_it_and_keeps_one_copy(index: Path) -> None:
    old = open_recommender(index)
    old_text = str(old.bundle.items["text"][5])
    item_id = str(old.bundle.ids[5])
    popularity = old.bundle.popularity[5]  # type: ignore[index]
    upsert(index, item_id, title="Quantum Lighthouse Keepers (2031)", genres=["Sci-Fi", "Mystery"])
    recommender = open_recommender(index)
    assert ids_of(recommender.search(NEW_TEXT, k=1)) == [item_id]
    everything = ids_of(recommender.search(old_text, k=N_ITEMS))
    assert everything.count(item_id) == 1 and len(everything) == N_ITEMS
    assert recommender.search(old_text, k=1).items[0].id != item_id
    # The build's popularity count stays with the item; a new item starts at zero.
    assert recommender.get(item_id).metadata["popularity"] == popularity
    upsert(index, "brand-new", title="Nothing Like It (2030)")
    assert open_recommender(index).get("brand-new").metadata["popularity"] == 0


def test_approximate_search_keeps_its_recall_against_the_exact_twin(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})[N_ITEMS : N_ITEMS + 150]
    items = [ItemFields(f"x{m}", {"title": t, "genres": g}) for m, t, g in movies.to_numpy()]
    update_index(root, items, [str(i) for i in range(1, 60)], embedder(), policy=None)
    searcher = open_recommender(root).searcher
    queries = np.asarray(searcher.vectors[::7], dtype=np.float32)
    _, approximate = searcher.search(queries, 10)
    _, exact = searcher.exact(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact, strict=True)])
    assert recall >= 0.9
    live = searcher.live
    assert live is not None and live[approximate[approximate >= 0]].all()


def test_compaction_folds_updates_into_a_version_with_the_same_answers(index: Path) -> None:
    upsert(index, "new-1", title="Quantum Lighthouse Keepers (2031)", genres="Sci-Fi")
    delete(index, "1", "2", "3")
    before = open_recommender(index)
    assert pending_changes(before.bundle) == 4
    queries = [*before.bundle.items["text"][[10, 20, 30]].tolist(), NEW_TEXT]
    expected = [ids_of(before.search(q, k=10)) for q in queries]
    expected_scores = [[i.score for i in before.search(q, k=10).items] for q in queries]

    result = compact(index)
    after = open_recommender(index)
    assert after.bundle.path == result.path != before.bundle.path
    assert result.items == after.bundle.live_count == len(after.bundle) == N_ITEMS - 2
    assert after.bundle.deleted is None and after.bundle.indexed_rows == N_ITEMS - 2
    assert pending_changes(after.bundle) == 0 and result.folded == 4
    assert after.bundle.manifest.source["compacted_from"] == before.bundle.manifest.version
    got = [ids_of(after.search(q, k=10)) for q in queries]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, expected, strict=True)])
    if after.bundle.manifest.index.factory == "Flat":  # exact: the same scores (ties may swap)
        got_scores = [[i.score for i in after.search(q, k=10).items] for q in queries]
        np.testing.assert_allclose(got_scores, expected_scores, rtol=1e-6)
    assert overlap >= 0.9
    assert got[-1][0] == "new-1"
    # The old version and its log stay for a rollback.
    assert log_path(index, before.bundle.manifest.version).is_file()


def test_updates_logged_during_a_compaction_are_carried_into_the_new_version(
    tmp_path: Path,
) -> None:
    root = make_index(tmp_path, "HNSW16")
    delete(root, "1")
    snapshot = Bundle.load(root)
    content = compacted_content(snapshot)  # the slow part: writes go on meanwhile
    upsert(root, "late", title="Quantum Lighthouse Keepers (2031)", genres="Sci-Fi|Mystery")
    delete(root, "2")
    result = finish(snapshot, content)
    assert result.carried == 2
    recommender = open_recommender(root)
    assert recommender.bundle.path == result.path
    assert ids_of(recommender.search(NEW_TEXT, k=1)) == ["late"]
    for gone in ("1", "2"):
        with pytest.raises(UnknownItem):
            recommender.get(gone)


def test_a_compaction_overtaken_by_a_build_replaces_nothing(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    snapshot = Bundle.load(root)
    content = compacted_content(snapshot)
    newer = make_index(tmp_path, "Flat")  # a rebuild of the same name
    with pytest.raises(IndexLocked, match="changed version"):
        finish(snapshot, content)
    assert Bundle.load(root).path == Bundle.load(newer).path


def test_policy_compacts_once_updates_pass_the_threshold(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    policy = CompactionPolicy(fraction=0.001, min_changes=5)
    first = update_index(root, [], ["1", "2"], embedder(), policy=policy)
    assert first.compaction is None
    second = update_index(root, [], ["3", "4", "5"], embedder(), policy=policy)
    assert second.compaction is not None
    bundle = Bundle.load(root)
    assert bundle.path == second.compaction.path and bundle.live_count == N_ITEMS - 5
    assert pending_changes(bundle) == 0


def test_a_torn_last_write_is_ignored_and_a_damaged_log_refused(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    upsert(root, "kept", title="Kept (2020)")
    log = log_path(root, Bundle.load(root).manifest.version)
    with log.open("ab") as fh:
        fh.write(b'0123 {"seq": 2, "ops": [{"op": "dele')  # killed mid-write: never acknowledged
    assert "kept" in Bundle.load(root).row_of
    upsert(root, "after", title="After (2021)")  # truncates the torn tail, then appends
    state = read_log(log, 64)
    assert [b.seq for b in state.batches] == [1, 2] and state.size == log.stat().st_size
    data = bytearray(log.read_bytes())
    data[70] ^= 0x01  # damage the first batch
    log.write_bytes(bytes(data))
    with pytest.raises(BundleCorrupt, match="damaged"):
        Bundle.load(root)


def test_an_acknowledged_update_survives_a_kill(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    script = (
        "import os, sys\n"
        "from engine import HashEmbedder\n"
        "from engine.changes import ItemFields\n"
        "from engine.writes import update_index\n"
        "update_index(sys.argv[1], [ItemFields('acked', {'title': 'Acked (2022)'})], ['1'],\n"
        "             HashEmbedder(64), policy=None)\n"
        "print('acknowledged', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -9 and "acknowledged" in done.stdout
    bundle = Bundle.load(root)
    assert "acked" in bundle.row_of and "1" not in bundle.row_of


def test_a_second_writer_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    bundle = Bundle.load(root)
    prepared = prepare(bundle, [ItemFields("x", {"title": "X (2000)"})], [], embedder())
    with writer_lock(root), pytest.raises(IndexLocked):
        commit(bundle, prepared.changes)
    assert "x" not in Bundle.load(root).row_of
    assert not log_path(root, bundle.manifest.version).exists()


def test_a_commit_sees_batches_another_process_logged(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    stale = Bundle.load(root)
    upsert(root, "theirs", title="Theirs (2001)")
    mine = prepare(stale, [ItemFields("mine", {"title": "Mine (2002)"})], [], embedder())
    merged = commit(stale, mine.changes)
    assert {"theirs", "mine"} <= set(merged.row_of)
    assert merged.log.last_seq == 2


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (ItemFields("a", {"colour": "red"}), "upsert[0].fields.colour", "unknown item field"),
        (ItemFields("a", {"popularity": "lots"}), "upsert[0].fields.popularity", "not a number"),
        (ItemFields("a", {"genres": {"x": 1}}), "upsert[0].fields.genres", "list of strings"),
        (ItemFields("a", {}), "upsert[0].fields", "no text"),
        (ItemFields("a", {}, text="  "), "upsert[0].text", "non-empty"),
        (ItemFields("", {"title": "T"}), "upsert[0].id", "printable"),
    ],
)
def test_bad_items_are_refused_naming_the_field(
    tmp_path: Path, item: ItemFields, field: str, message: str
) -> None:
    root = make_index(tmp_path, "Flat")
    with pytest.raises(InvalidArgument, match=message) as caught:
        update_index(root, [item], [], embedder(), policy=None)
    assert caught.value.field == field
    assert not (root / "updates").exists()


def test_one_change_per_item_per_batch(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    with pytest.raises(InvalidArgument, match="twice") as caught:
        update_index(root, [ItemFields("1", {"title": "One"})], ["1"], embedder(), policy=None)
    assert caught.value.field == "delete"


def test_deleting_unknown_ids_is_reported_not_logged(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    report = update_index(root, [], ["no-such-id", "1"], embedder(), policy=None)
    assert report.prepared.missing == ("no-such-id",) and report.prepared.deleted == ("1",)
    (batch,) = read_log(log_path(root, report.bundle.manifest.version), 64).batches
    assert [c.id for c in batch.changes] == ["1"]
