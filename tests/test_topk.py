"""The heap top-k against a full sort (the oracle), with masked and missing entries."""

from __future__ import annotations

import numpy as np
import pytest

from engine.topk import TopK, top_k


@pytest.mark.parametrize(("m", "n", "k"), [(1, 9742, 10), (5, 300, 40), (3, 7, 7), (2, 50, 1)])
def test_top_k_equals_a_full_sort(m: int, n: int, k: int) -> None:
    sims = np.random.default_rng(n).standard_normal((m, n)).astype(np.float32)
    scores, cols = top_k(sims, k)
    order = np.argsort(-sims, axis=1)[:, :k]
    assert np.array_equal(cols, order)
    assert np.array_equal(scores, np.take_along_axis(sims, order, axis=1))


def test_masked_entries_are_never_kept_and_short_rows_are_padded() -> None:
    sims = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)
    sims[0, [1, 4]] = -np.inf
    sims[1, :] = -np.inf
    sims[1, 2] = 0.5
    scores, cols = top_k(sims, 5)
    assert set(cols[0, :4]) == {0, 2, 3, 5} and cols[0, 4] == -1
    assert list(cols[1]) == [2, -1, -1, -1, -1]
    assert scores[1, 0] == np.float32(0.5) and np.isneginf(scores[1, 1:]).all()


def test_blocks_fed_in_pieces_keep_their_row_numbers() -> None:
    sims = np.random.default_rng(2).standard_normal((4, 100)).astype(np.float32)
    heaps = TopK(np.empty((4, 8), np.float32), np.empty((4, 8), np.int64))
    for start in range(0, 100, 30):
        heaps.add(sims[:, start : start + 30], start)
    scores, rows = heaps.finish()
    whole_scores, whole_rows = top_k(sims, 8)
    assert np.array_equal(rows, whole_rows) and np.array_equal(scores, whole_scores)


def test_columns_offered_in_any_order_keep_their_ids() -> None:
    sims = np.random.default_rng(5).standard_normal((3, 200)).astype(np.float32)
    order = np.random.default_rng(6).permutation(200)
    heaps = TopK(np.empty((3, 12), np.float32), np.empty((3, 12), np.int64))
    for start in range(0, 200, 64):
        ids = order[start : start + 64]
        heaps.add(sims[:, ids], ids=ids)
    scores, rows = heaps.finish()
    whole_scores, whole_rows = top_k(sims, 12)
    assert np.array_equal(rows, whole_rows) and np.array_equal(scores, whole_scores)
