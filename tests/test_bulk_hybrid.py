"""Bulk answers as online on a bundle with collaborative vectors, where a request's default mode
is hybrid: fused requests go through the online recommender, content ones through the scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import InvalidArgument, Recommender
from engine.bulk import BatchRecommender, BulkRequest
from engine.results import QueryOptions
from tests.test_bulk import assert_same_answers
from tests.test_bulk_fast import answers, random_batch
from tests.test_hybrid import make, open_rec


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    return open_rec(make(tmp_path_factory.mktemp("bulk-hybrid")))


@pytest.mark.parametrize(
    "options, fused",
    [
        (QueryOptions(strategy="mean"), True),  # the bundle's default: hybrid
        (QueryOptions(strategy="mean", mode="collaborative"), True),
        (QueryOptions(strategy="multi_interest", mode="hybrid", explain=True), True),
        (QueryOptions(strategy="mean", mode="content"), False),
    ],
    ids=["default", "collaborative", "hybrid-explained", "content"],
)
def test_bulk_answers_each_mode_as_online(
    rec: Recommender, options: QueryOptions, fused: bool
) -> None:
    batch = random_batch([str(i) for i in rec.bundle.ids], 60, seed=5)
    request = BulkRequest(k=15, options=options)
    batcher = BatchRecommender(rec, request)
    assert batcher.fused == fused
    assert (batcher.chunk_request is None) == (fused or options.strategy != "mean")
    got = answers(batcher, batch)
    table, stats = batcher.recommend(batch)
    popular = 0
    for u, user in enumerate(batch.user_ids):
        online = rec.recommend(batch.history(u), None, 15, options=options)
        popular += online.source == "popularity"
        ids, scores = got.get(user, ([], np.zeros(0)))
        online_scores = np.array([item.score for item in online.items])
        if fused:  # the online recommender itself: the same list and scores
            assert ids == list(online.ids)
            np.testing.assert_allclose(scores, online_scores, rtol=1e-6)
        else:
            assert_same_answers(ids, scores, list(online.ids), online_scores)
    assert stats.popular == popular >= 2  # users without history, or only unknown ids
    if options.explain:
        assert "explanation" in table.column_names
        assert all(text.startswith("[") for text in table.column("explanation").to_pylist())


def test_fused_answers_are_not_the_content_ones(rec: Recommender) -> None:
    """The check above could not tell a fused request answered by content search."""
    batch = random_batch([str(i) for i in rec.bundle.ids], 30, seed=6)
    hybrid = answers(BatchRecommender(rec, BulkRequest(k=10)), batch)
    content = answers(
        BatchRecommender(rec, BulkRequest(k=10, options=QueryOptions(mode="content"))), batch
    )
    assert sum(hybrid[u][0] != content[u][0] for u in content) >= 20


def test_a_mode_the_bundle_cannot_serve_fails_before_any_user(tmp_path: Path) -> None:
    plain = open_rec(make(tmp_path, collaborative=False))
    with pytest.raises(InvalidArgument, match="collaborative"):
        BatchRecommender(plain, BulkRequest(options=QueryOptions(mode="collaborative")))
