"""A half-precision pre-scan that tells an exact scan which rows it may skip, where it pays.

The bulk scan (:mod:`engine.bulk.scan`) is a float32 matrix product and a heap per query. On a
CPU with bfloat16 matrix units (Intel AMX) torch's bfloat16 product of a chunk's queries with
the catalogue takes a sixth of numpy's float32 one (1,024 MovieLens queries: 4.8-6.9 ms against
42 ms, bench/RESULTS.md, issue 6), and its error has a bound (:func:`margins`). That makes a skip
provably safe:

1. the first :data:`HEAD_ROWS` rows of the scan's order (those nearest the catalogue's centre) are
   scored exactly: each query's heap then holds a k-th score, a *floor* its final k-th can only
   rise above;
2. the rest are scored in bfloat16 against the floors lowered by the margin, in one product: each
   query carries ``-(floor - margin)`` as one more coordinate and each row a 1 there, so a row's
   result is positive exactly where it may still beat the query's floor. Only the rows positive
   for some query of the block are scored exactly and offered to the heaps.

Answers are those of the full exact scan: a skipped row's float32 score is below every floor of
its block, so below every score kept. On MovieLens a block of 256 users' queries keeps ~11 % of
the rows past the head. Where bfloat16 products are not that much faster (no AMX: 38 ms against
78 on an AMD EPYC), :func:`plan_prescan` measures that and the scan stays as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import ThreadpoolController

if TYPE_CHECKING:
    import torch

# Rows scored exactly first: enough for each query's heap to be full (2k <= this) and its floor
# close to its final k-th (on MovieLens the k = 100th of the first 512 rows in centre order is
# within 0.001 of the final one).
HEAD_ROWS = 512
# The pre-scan is used when a bfloat16 product costs at most this share of a float32 one: it then
# adds the exact product of the rows it keeps and the heaps' work on them.
WORTH_RATIO = 0.35
# bfloat16 keeps 8 significant bits: rounding to nearest moves a value by at most 2^-8 of itself.
_UNIT = 2.0**-8
# Coordinates of the bfloat16 product: d, the floor's, zeros up to a multiple of 16 (a width AMX
# tiles take whole: 2.2 ms for 256 queries × 9,230 rows against 3.7 at d + 1).
_ALIGN = 16


def margins(
    query_norms: np.ndarray, row_norm: float, floors: np.ndarray, dimension: int
) -> np.ndarray:
    """``float64 (m,)``: how far below each floor the pre-scan's threshold must sit.

    With ``s = |q| max|v|`` and ``f`` the floor, a row whose float32 score reaches ``f`` has a
    real inner product of at least ``f - g s`` (float32's own error, ``g = d 2^-24`` to first
    order); its bfloat16 factors lose at most ``(2u + u^2) s`` (Cauchy-Schwarz on
    ``sum |q_i v_i|``), the threshold coordinate ``u |f - margin|``, and the float32 accumulation
    of ``d + 1`` exact products at most ``g' (s + |f - margin|)``. The margin covers their sum;
    then the result is positive, and rounding it to bfloat16 keeps its sign. ``u = 2^-8``.
    """
    u = _UNIT
    scale = np.asarray(query_norms, dtype=np.float64) * row_norm
    floor = np.abs(np.asarray(floors, dtype=np.float64))
    gamma = 1.01 * (dimension + 1) * 2.0**-24 * (1 + u) ** 2
    # margin = a + b * margin, solved for the margin (|f - margin| <= |f| + margin).
    a = (2 * u + u * u) * scale + u * floor + gamma * (2 * scale + floor)
    b = u + gamma
    return a / (1 - b) + 1e-6 * (1 + scale + floor)


@dataclass(frozen=True)
class PreScan:
    """The scan's rows after its first ``head``: ``rows`` ``bfloat16 (a - head, w)`` (torch),
    each row's ``d`` coordinates, a 1 and zeros; ``row_norm``, the largest norm among them."""

    head: int
    rows: torch.Tensor
    row_norm: float
    # Made after torch is loaded, so that it knows torch's OpenMP (inspecting costs milliseconds).
    libraries: ThreadpoolController = field(default_factory=ThreadpoolController, repr=False)

    def candidates(self, queries: np.ndarray, floors: np.ndarray) -> np.ndarray:
        """``int64 (c,)`` ascending positions (after the head) of the rows some query may still
        rank: those whose float32 score may reach the query's entry of ``floors``.

        ``queries`` ``float32 (m, d)``; ``floors`` ``float32 (m,)``, each query's k-th exact score
        so far (``-FLT_MAX`` where its heap is not full: every row is kept)."""
        import torch

        d = queries.shape[1]
        norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
        floor = np.maximum(np.asarray(floors, dtype=np.float64), -1e30)
        threshold = floor - margins(norms, self.row_norm, floor, d)
        extended = _widened(queries, self.rows.shape[1], (-threshold).astype(np.float32))
        # On the calling thread only: the bulk job's threads are its parallelism, and OpenMP's
        # thread count is each thread's own (torch.set_num_threads would also change MKL's for
        # the whole process).
        with self.libraries.limit(limits=1, user_api="openmp"):
            results = self.rows @ extended.T  # (rows, queries)
            # A bfloat16's sign is its top bit: as int16 the positive ones are the positive
            # values, and a max over int16 is ~6x faster than over bfloat16.
            keep = results.view(torch.int16).amax(dim=1) > 0
        return np.flatnonzero(keep.numpy()).astype(np.int64)


def plan_prescan(
    gathered: np.ndarray, enable: bool | None = None, head: int | None = None
) -> PreScan | None:
    """The pre-scan of ``gathered`` (``float32 (a, d)``, the scan's rows in its order), or None.

    ``enable`` None measures whether it pays on this machine (a bfloat16 and a float32 product of
    256 of the rows with the rest, alternating, best of five each, one thread) and checks its rule
    on those 256 queries against their exact scores; True builds it whenever there are rows after
    the head (tests); False never. ``head``: default :data:`HEAD_ROWS`.
    """
    head = HEAD_ROWS if head is None else head
    if enable is False or len(gathered) <= head:
        return None

    rest = np.ascontiguousarray(gathered[head:], dtype=np.float32)
    n, d = rest.shape
    rows = _widened(rest, -(-(d + 1) // _ALIGN) * _ALIGN, np.ones(n, np.float32))
    norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", rest, rest, dtype=np.float64))))
    prescan = PreScan(head, rows, norm)
    if enable is True:
        return prescan
    return prescan if _pays(gathered, prescan) else None


def _widened(vectors: np.ndarray, width: int, last: np.ndarray) -> torch.Tensor:
    """``bfloat16 (n, width)``: ``float32 (n, d)`` ``vectors``, then ``last`` ``(n,)``, then zeros."""
    import torch

    n, d = vectors.shape
    out = torch.zeros((n, width), dtype=torch.bfloat16)
    out[:, :d] = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    out[:, d] = torch.from_numpy(np.ascontiguousarray(last, dtype=np.float32))
    return out


def _pays(gathered: np.ndarray, prescan: PreScan) -> bool:
    sample = np.ascontiguousarray(gathered[:: max(1, len(gathered) // 256)][:256])
    rest = gathered[prescan.head :]
    half = _widened(sample, prescan.rows.shape[1], np.zeros(len(sample), np.float32))
    with prescan.libraries.limit(limits=1, user_api=None):
        exact = sample @ rest.T
        # Floors as a head leaves them: each query's 10th best score.
        floors = np.sort(exact, axis=1)[:, -10]
        kept = np.zeros(len(rest), dtype=bool)
        kept[prescan.candidates(sample, floors)] = True
        # Alternating, best of five each: a core busy with something else slows both alike.
        float32, bfloat16 = np.inf, np.inf
        for _ in range(5):
            float32 = min(float32, _seconds(lambda: sample @ rest.T))
            bfloat16 = min(bfloat16, _seconds(lambda: prescan.rows @ half.T))
    rule_holds = bool(kept[np.any(exact >= floors[:, None], axis=0)].all())
    return rule_holds and bfloat16 <= WORTH_RATIO * float32


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start
