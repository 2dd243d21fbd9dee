"""engine.bulk.scan against a brute-force reference: exact, masked per query and globally."""

from __future__ import annotations

import numpy as np
import pytest

import engine.bulk.scan as scan


def reference(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    masked: set[tuple[int, int]],
) -> list[list[int]]:
    """Each query's allowed, unmasked rows by descending score (stable on row order)."""
    scores = queries @ vectors.T
    out = []
    for q in range(len(queries)):
        rows = [
            r for r in np.argsort(-scores[q], kind="stable")
            if (allowed is None or allowed[r]) and (q, int(r)) not in masked
        ]  # fmt: skip
        out.append([int(r) for r in rows[:k]])
    return out


def masked_case(
    n_rows: int, n_queries: int, n_masks: int, seed: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Random ``vectors (n_rows, 16)``, ``queries``, ``allowed`` (80 %) and sorted masked pairs."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_rows, 16)).astype(np.float32)
    queries = rng.normal(size=(n_queries, 16)).astype(np.float32)
    allowed = rng.random(n_rows) < 0.8
    pairs = sorted({(int(q), int(r)) for q, r in zip(rng.integers(0, n_queries, n_masks),
                                                       rng.integers(0, n_rows, n_masks), strict=True)})  # fmt: skip
    return vectors, queries, allowed, pairs


def as_arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Masked queries and rows, ``int64 (e,)`` each."""
    return (
        np.array([q for q, _ in pairs], dtype=np.int64),
        np.array([r for _, r in pairs], dtype=np.int64),
    )


@pytest.mark.parametrize(
    "query_block, column_block, threads",
    [(512, 16_384, 2), (7, 50, 2), (7, 50, 1), (300, 64, 3)],
    ids=["one-block", "many-blocks", "one-thread", "uneven"],
)
def test_masked_top_k_equals_brute_force(
    monkeypatch: pytest.MonkeyPatch, query_block: int, column_block: int, threads: int
) -> None:
    monkeypatch.setattr(scan, "QUERY_BLOCK", query_block)
    monkeypatch.setattr(scan, "COLUMN_BLOCK", column_block)
    vectors, queries, allowed, pairs = masked_case(230, 40, 900)
    # Query 5 may see only 3 rows: its list is padded.
    pairs += [(5, r) for r in range(230) if (5, r) not in set(pairs)][:-3]
    pairs.sort()
    masked_q, masked_r = as_arrays(pairs)
    k = 25
    scores, rows = scan.masked_top_k(
        vectors, queries, k, scan.scan_rows(vectors, allowed), masked_q, masked_r, threads
    )
    assert scores.shape == rows.shape == (40, k)
    want = reference(vectors, queries, k, allowed, set(pairs))
    for q in range(40):
        got = [int(r) for r in rows[q] if r >= 0]
        assert got == want[q], q
        exact = queries[q] @ vectors[got].T
        np.testing.assert_allclose(scores[q, : len(got)], exact, rtol=1e-5, atol=1e-5)
        assert np.all(np.isneginf(scores[q, len(got) :]))
    assert len(want[5]) <= 3 and (rows[5, 3:] == -1).all()


def test_nothing_masked_is_a_plain_exact_search() -> None:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(30, 8)).astype(np.float32)
    none = np.zeros(0, np.int64)
    _, rows = scan.masked_top_k(vectors, queries, 10, scan.scan_rows(vectors, None), none, none)
    np.testing.assert_array_equal(rows, np.argsort(-(queries @ vectors.T), axis=1)[:, :10])


def test_scan_rows_offer_the_allowed_rows_nearest_the_centre_first() -> None:
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(300, 12)).astype(np.float32)
    allowed = rng.random(300) < 0.6
    rows = scan.scan_rows(vectors, allowed)
    assert sorted(rows.order.tolist()) == np.flatnonzero(allowed).tolist()
    assert np.array_equal(rows.column[rows.order], np.arange(len(rows.order)))
    assert (rows.column[~allowed] == -1).all()
    assert rows.gathered is not None and np.array_equal(rows.gathered, vectors[rows.order])
    centre = vectors[allowed].mean(axis=0)
    nearness = vectors[rows.order] @ centre
    assert np.all(np.diff(nearness) <= 1e-5)  # non-increasing: the heaps' thresholds rise early


def test_a_catalogue_wider_than_one_product_is_gathered_block_by_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scan, "COLUMN_BLOCK", 64)
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    rows = scan.scan_rows(vectors, None)
    assert rows.gathered is None
    none = np.zeros(0, np.int64)
    _, found = scan.masked_top_k(vectors, queries, 15, rows, none, none)
    np.testing.assert_array_equal(found, np.argsort(-(queries @ vectors.T), axis=1)[:, :15])
