"""The chunk-wide bulk path answers what the per-user path answers (which test_bulk.py holds to
the online recommender): queries to float32 rounding, rankings up to near-tied neighbours."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import engine.bulk.batch as batch_module
import engine.bulk.prescan as prescan
import engine.bulk.scan as scan
from engine import Filter, QueryOptions, Recommender, RerankConfig
from engine.bulk import BatchRecommender, BulkRequest, UserBatch
from engine.bulk.chunk_model import ChunkHistory, chunk_mean_queries
from engine.usermodel import UserModelConfig, mean_query, user_signal
from tests.test_bulk import assert_same_answers


def random_batch(ids: list[str], n_users: int, seed: int) -> UserBatch:
    """Users with histories of 0-120 events: repeats, unknown ids, dislikes (weights 0.5-5 around
    a neutral 3), untimed events, and users whose events are all unknown or all disliked."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 120, n_users)
    lengths[:3] = [0, 2, 3]
    items: list[str] = []
    weights: list[float] = []
    times: list[float] = []
    for u, n in enumerate(lengths):
        picked = rng.choice(len(ids), n)
        for j, row in enumerate(picked):
            unknown = u == 1 or rng.random() < 0.03
            items.append(f"missing-{u}-{j}" if unknown else ids[row])
            weights.append(1.0 if u == 2 else float(rng.choice(np.arange(0.5, 5.5, 0.5))))
            times.append(np.nan if rng.random() < 0.1 else float(1.2e9 + rng.integers(0, 9e7)))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return UserBatch(
        [f"u{u}" for u in range(n_users)],
        offsets,
        pa.array(items, type=pa.string()),
        np.asarray(weights),
        np.asarray(times),
    )


def rows_of(rec: Recommender, batch: UserBatch) -> np.ndarray:
    return np.asarray([rec.bundle.row_of.get(i, -1) for i in batch.items.to_pylist()], np.int64)


@pytest.mark.parametrize(
    "model",
    [
        UserModelConfig(neutral_weight=3.0),
        UserModelConfig(neutral_weight=3.0, half_life_days=None, dislike_weight=0.0),
        UserModelConfig(like_weight=0.0, neutral_weight=3.0),
        UserModelConfig(neutral_weight=3.0, half_life_days=30.0, recency_floor=0.0),
    ],
    ids=["dislikes", "no-decay", "no-likes", "steep-decay"],
)
def test_chunk_queries_equal_the_per_user_user_model(
    hash_index: Path, model: UserModelConfig
) -> None:
    rec = Recommender.open(hash_index)
    batch = random_batch([str(i) for i in rec.bundle.ids], 80, seed=1)
    rows = rows_of(rec, batch)
    history = ChunkHistory.from_offsets(batch.offsets, rows, batch.weights, batch.timestamps)
    queries, has_query = chunk_mean_queries(history, rec.bundle.vectors, model)
    assert queries.dtype == np.float32 and queries.shape == (80, rec.bundle.dimension)
    expected_some = 0
    for u in range(80):
        s, e = batch.offsets[u], batch.offsets[u + 1]
        known = rows[s:e] >= 0
        signal = user_signal(
            rows[s:e][known].tolist(),
            rec.bundle.vectors[rows[s:e][known]],
            batch.weights[s:e][known].tolist(),
            [None if np.isnan(t) else float(t) for t in batch.timestamps[s:e][known]],
            None,
            model,
        )
        expected = mean_query(signal, model)
        assert has_query[u] == (expected is not None), u
        if expected is not None:
            expected_some += 1
            np.testing.assert_allclose(queries[u], expected, atol=1e-6, rtol=0)
        else:
            assert not queries[u].any()
    # Not vacuous: most users have queries (none at all without likes and interests text), the
    # edge users (empty, all unknown, all weight 1 < neutral 3 = disliked) have none.
    assert not has_query[:3].any()
    assert expected_some > 60 if model.like_weight > 0 else expected_some == 0


def answers(batcher: BatchRecommender, batch: UserBatch) -> dict[str, tuple[list[str], np.ndarray]]:
    table, _ = batcher.recommend(batch)
    frame = table.to_pandas()
    out = {}
    for user, group in frame.groupby("user_id", sort=False):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        out[str(user)] = (group["item_id"].tolist(), group["score"].to_numpy(np.float64))
    return out


REQUESTS = {
    "default": BulkRequest(k=20, options=QueryOptions(strategy="mean")),
    "filtered+exclude": BulkRequest(
        k=30,
        options=QueryOptions(strategy="mean"),
        filters=(Filter("genres", eq="Comedy"),),
        exclude=("1", "2", "3"),
    ),
    "keep-seen": BulkRequest(k=10, options=QueryOptions(strategy="mean"), exclude_seen=False),
    "no-rescore": BulkRequest(
        k=25, options=QueryOptions(strategy="mean", rerank=RerankConfig(exact=False))
    ),
    # Fewer eligible rows than k: every user's list is the whole filtered set less its history.
    "k-over-eligible": BulkRequest(
        k=200, options=QueryOptions(strategy="mean"), filters=(Filter("genres", eq="Western"),)
    ),
    "dislikes": BulkRequest(
        k=15, options=QueryOptions(strategy="mean"), user_model=UserModelConfig(neutral_weight=3)
    ),
}


@pytest.mark.parametrize("pre", [False, True], ids=["full-scan", "prescan"])
@pytest.mark.parametrize("name", list(REQUESTS))
def test_chunk_path_answers_as_the_per_user_path(
    hash_index: Path, name: str, pre: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan with and without the bfloat16 pre-scan, whatever this machine would choose.
    monkeypatch.setattr(prescan, "HEAD_ROWS", 64)
    monkeypatch.setattr(batch_module, "scan_rows", partial(scan.scan_rows, prescan=pre))
    rec = Recommender.open(hash_index)
    request = REQUESTS[name]
    batch = random_batch([str(i) for i in rec.bundle.ids], 120, seed=7)
    fast = BatchRecommender(rec, request)
    assert fast.chunk_request is not None
    rows = fast.chunk_request.rows
    assert (rows.prescan is not None) == (pre and len(rows.order) > 64)
    slow = BatchRecommender(rec, request)
    slow.chunk_request = None  # the per-user pipeline, item for item as online
    got, want = answers(fast, batch), answers(slow, batch)
    assert got.keys() == want.keys()
    moved = sum(assert_same_answers(*got[u], *want[u]) for u in want)
    assert moved <= 0.01 * sum(len(v[0]) for v in want.values())
    _, stats = fast.recommend(batch)
    # Users with a liked known item are answered chunk-wide; the rest by the popularity fallback.
    assert stats.vectorised + stats.popular == 120 and stats.vectorised >= 100
    if request.exclude_seen:
        seen = {u: set(batch.history(i)[j].item_id for j in range(len(batch.history(i))))
                for i, u in enumerate(batch.user_ids)}  # fmt: skip
        assert all(not seen[u] & set(ids) for u, (ids, _) in got.items())


def test_chunk_path_is_not_taken_for_what_it_does_not_do(hash_index: Path) -> None:
    rec = Recommender.open(hash_index)
    for options in (
        QueryOptions(strategy="multi_interest"),
        QueryOptions(strategy="mean", explain=True),
        QueryOptions(strategy="mean", rerank=RerankConfig(mmr_lambda=0.5)),
    ):
        assert BatchRecommender(rec, BulkRequest(k=5, options=options)).chunk_request is None
    plain = BulkRequest(k=5, options=QueryOptions(strategy="mean"))
    assert BatchRecommender(rec, plain).chunk_request is not None
