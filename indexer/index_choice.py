"""Which FAISS index to build: a pure function of catalogue size, with named thresholds.

* up to :data:`FLAT_MAX_ITEMS`: exact ``Flat``. Scanning 20k 384-d vectors costs well under a
  millisecond per query on one core, and exact is the best recall there is.
* up to :data:`HNSW_MAX_ITEMS`: ``HNSW32,SQfp16``: the best latency/recall trade-off in
  memory; its graph adds ~256 bytes per item, and it needs no training. The graph's vectors are
  stored in half precision (:data:`HNSW_STORAGE`): a graph search is bound by fetching each
  visited vector from memory, and half the bytes made it faster at the same recall (1M MiniLM
  vectors, efSearch 48: recall@10 0.954 both ways, 1.22× the queries per second single and
  1.33× batched, bench/RESULTS.md). Results lose nothing: the re-ranker's exact stage re-scores
  every candidate with the bundle's float32 vectors.
* above: ``IVF{nlist},SQ8``: a trained k-means coarse quantizer with 8-bit scalar codes, a quarter
  of Flat's memory, with ``nlist`` ~ 4·sqrt(n) (rounded to a power of two) lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FLAT_MAX_ITEMS = 20_000
HNSW_MAX_ITEMS = 2_000_000
HNSW_M = 32
HNSW_STORAGE = "SQfp16"
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
# FAISS's k-means wants at least 39 training points per list.
MIN_POINTS_PER_LIST = 39
IVF_MAX_NLIST = 65_536
IVF_MIN_NPROBE = 16
IVF_MAX_NPROBE = 256


@dataclass(frozen=True)
class IndexChoice:
    """A factory string, its default search parameters and why it was chosen."""

    factory: str
    search_params: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def ivf_nlist(n_items: int) -> int:
    """Number of IVF lists for ``n_items``: ~4·sqrt(n), a power of two, trainable."""
    target = 4 * math.sqrt(max(n_items, 1))
    trainable = max(n_items // MIN_POINTS_PER_LIST, 1)
    exponent = min(round(math.log2(max(target, 1))), int(math.log2(trainable)))
    return int(min(2 ** max(exponent, 0), IVF_MAX_NLIST))


def ivf_nprobe(nlist: int) -> int:
    """Default lists probed per query: 1/8 of them, clamped; the autotuner may refine it."""
    return int(min(max(nlist // 8, IVF_MIN_NPROBE), IVF_MAX_NPROBE, nlist))


def hnsw_factory() -> str:
    """The graph index ``--factory auto`` builds and the autotuner measures."""
    return f"HNSW{HNSW_M},{HNSW_STORAGE}"


def hnswlib_factory() -> str:
    """The hnswlib graph the autotuner measures beside :func:`hnsw_factory` (same links)."""
    return f"hnswlib{HNSW_M}"


def choose_index(n_items: int, dimension: int) -> IndexChoice:
    """The index ``--factory auto`` builds for ``n_items`` vectors of ``dimension``."""
    if n_items <= 0 or dimension <= 0:
        raise ValueError("n_items and dimension must be positive")
    if n_items <= FLAT_MAX_ITEMS:
        return IndexChoice("Flat", {}, f"{n_items} <= FLAT_MAX_ITEMS ({FLAT_MAX_ITEMS}): exact")
    if n_items <= HNSW_MAX_ITEMS:
        return IndexChoice(
            hnsw_factory(),
            {"efSearch": HNSW_EF_SEARCH},
            f"{n_items} <= HNSW_MAX_ITEMS ({HNSW_MAX_ITEMS}): graph index, half-precision vectors",
        )
    nlist = ivf_nlist(n_items)
    return IndexChoice(
        f"IVF{nlist},SQ8",
        {"nprobe": ivf_nprobe(nlist)},
        f"{n_items} > HNSW_MAX_ITEMS ({HNSW_MAX_ITEMS}): inverted lists, 8-bit codes",
    )
