"""engine.bulk.prescan: its error bound holds, and a scan that skips rows by it answers as the
full exact scan (its exact twin) and as brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import engine.bulk.prescan as prescan
import engine.bulk.scan as scan
from tests.test_bulk_scan import as_arrays, masked_case, reference


def with_prescan(vectors: np.ndarray, allowed: np.ndarray | None, head: int) -> scan.ScanRows:
    rows = scan.scan_rows(vectors, allowed, prescan=False)
    assert rows.gathered is not None
    return dataclasses.replace(rows, prescan=prescan.plan_prescan(rows.gathered, True, head))


@pytest.mark.parametrize("unit", [True, False], ids=["unit", "raw"])
def test_every_row_that_may_beat_a_floor_is_kept(unit: bool) -> None:
    rng = np.random.default_rng(11)
    for d in (8, 64, 384):
        vectors = rng.normal(size=(3000, d)).astype(np.float32)
        queries = rng.normal(size=(300, d)).astype(np.float32)
        # Rows of every magnitude, some well below bfloat16's spacing of the others.
        vectors *= rng.choice([1e-3, 1.0, 7.0], size=(3000, 1)).astype(np.float32)
        if unit:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        rows = prescan.plan_prescan(vectors, True, head=0)
        assert rows is not None
        exact = queries @ vectors.T
        # Floors where a head would put them (a query's 5th to 50th best score), and exactly
        # at some row's score: the hardest case for the rule.
        floors = np.sort(exact, axis=1)[np.arange(300), -rng.integers(5, 50, 300)]
        kept = np.zeros(3000, dtype=bool)
        kept[rows.candidates(queries, floors)] = True
        assert kept[np.any(exact >= floors[:, None], axis=0)].all()
        # Not vacuous: for a few queries, most rows are ruled out.
        assert len(rows.candidates(queries[:5], floors[:5])) < 0.3 * 3000


@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_scan_equals_brute_force(threads: int) -> None:
    vectors, queries, allowed, pairs = masked_case(900, 70, 2000)
    masked_q, masked_r = as_arrays(pairs)
    k = 12
    scores, rows = scan.masked_top_k(
        vectors, queries, k, with_prescan(vectors, allowed, 40), masked_q, masked_r, threads
    )
    want = reference(vectors, queries, k, allowed, set(pairs))
    for q in range(len(queries)):
        got = [int(r) for r in rows[q]]
        exact = (queries[q] @ vectors[want[q]].T).astype(np.float32)
        # Equal scores, best first; rows equal but where two scores tie to float32 rounding.
        np.testing.assert_allclose(scores[q], exact, rtol=1e-5, atol=1e-5)
        assert sum(g != w for g, w in zip(got, want[q], strict=True)) <= 2, q
        assert not {(q, r) for r in got} & set(pairs)
        assert all(allowed[r] for r in got)


def test_skipping_scan_is_the_full_scan_ties_included() -> None:
    """Small integer coordinates: every product is exact in bfloat16 and float32, and many rows
    tie exactly; the skipping scan keeps the same rows at the same places as the full one."""
    rng = np.random.default_rng(5)
    base = rng.integers(-3, 4, size=(300, 12)).astype(np.float32)
    vectors = np.concatenate([base, base[:200], base[:100]])  # every third row repeated
    queries = rng.integers(-3, 4, size=(90, 12)).astype(np.float32)
    masked_q = np.repeat(np.arange(90), 5).astype(np.int64)
    masked_r = rng.integers(0, len(vectors), 450).astype(np.int64)
    full = scan.scan_rows(vectors, None, prescan=False)
    for head in (20, 64, 200):
        want = scan.masked_top_k(vectors, queries, 10, full, masked_q, masked_r, 2)
        got = scan.masked_top_k(
            vectors, queries, 10, with_prescan(vectors, None, head), masked_q, masked_r, 2
        )
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_the_prescan_skips_rows_no_query_can_rank() -> None:
    rng = np.random.default_rng(9)
    # The near cluster is the larger: the catalogue's centre, and the head, lie in it.
    near = rng.normal(size=(600, 32)) + 4.0
    far = rng.normal(size=(400, 32)) - 4.0
    vectors = np.concatenate([near, far]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = (rng.normal(size=(50, 32)) + 4.0).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows = with_prescan(vectors, None, 64)
    assert rows.prescan is not None and rows.gathered is not None
    floors = np.sort(queries @ rows.gathered[:64].T, axis=1)[:, -10]
    kept = rows.prescan.candidates(queries, floors.astype(np.float32))
    kept_rows = set(rows.order[64 + kept].tolist())
    assert not kept_rows & set(range(600, 1000))  # the far cluster: skipped
    assert len(kept) < 600 - 64
    top = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    head_rows = set(rows.order[:64].tolist())
    assert set(top.ravel().tolist()) <= kept_rows | head_rows


def test_the_plan_measures_and_checks_before_it_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    gathered = rng.normal(size=(3000, 64)).astype(np.float32)
    assert prescan.plan_prescan(gathered, False) is None
    assert prescan.plan_prescan(gathered[:100], True) is None  # all rows fit the head
    built = prescan.plan_prescan(gathered, True)
    assert built is not None and built.rows.shape == (3000 - prescan.HEAD_ROWS, 80)
    monkeypatch.setattr(prescan, "WORTH_RATIO", 0.0)  # no machine is that fast
    assert prescan.plan_prescan(gathered) is None
    monkeypatch.setattr(prescan, "WORTH_RATIO", 1e9)
    assert prescan.plan_prescan(gathered) is not None
    # A margin too small: the rule drops rows that beat their floor.
    monkeypatch.setattr(prescan, "margins", lambda norms, *args: -0.05 * np.ones(len(norms)))
    assert prescan.plan_prescan(gathered) is None


def test_a_large_k_scans_every_row_exactly() -> None:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(600, 8)).astype(np.float32)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    none = np.zeros(0, np.int64)
    # k above half the head: the head's floors would be empty, the full scan runs instead.
    _, rows = scan.masked_top_k(vectors, queries, 40, with_prescan(vectors, None, 50), none, none)
    np.testing.assert_array_equal(rows, np.argsort(-(queries @ vectors.T), axis=1)[:, :40])
