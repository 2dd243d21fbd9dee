"""The search parameters a FAISS index carries itself, so a search that asks for exactly those
can skip building a ``SearchParameters`` object.

Passing one costs FAISS a Python-to-C++ conversion per call: ~0.1-0.3 ms per single query on
the 2 vCPU machine under load, against ~0.4-1 ms for the HNSW search itself (bench/RESULTS.md,
issue 7), which made vecrec's single-query path 0.74x bare FAISS before this shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faiss

from engine.hnswlib_index import HnswlibIndex


def innermost(index: Any) -> Any:
    """The index under any pre-transforms (PCA, OPQ...), downcast to its concrete type; an
    :class:`HnswlibIndex` as it is."""
    if isinstance(index, HnswlibIndex):
        return index
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return inner


def ivf_nlist(index: Any) -> int | None:
    """The number of inverted lists of an IVF ``index``; None for other types."""
    inner = innermost(index)
    return int(inner.nlist) if isinstance(inner, faiss.IndexIVF) else None


def own_search_params(index: Any) -> dict[str, int]:
    """``efSearch`` (HNSW, hnswlib) or ``nprobe`` (IVF) as set on ``index`` now; {} for other
    types."""
    inner = innermost(index)
    if isinstance(inner, HnswlibIndex):
        return {"efSearch": inner.ef_search}
    if isinstance(inner, faiss.IndexHNSW):
        return {"efSearch": int(inner.hnsw.efSearch)}
    if isinstance(inner, faiss.IndexIVF):
        return {"nprobe": int(inner.nprobe)}
    return {}


def carries(own: Mapping[str, int], wanted: Mapping[str, int], k: int) -> bool:
    """True when searching with the index's ``own`` parameters gives what ``wanted`` asks for
    (HNSW also needs efSearch >= k: it returns at most efSearch hits)."""
    if any(key in own and own[key] != value for key, value in wanted.items()):
        return False
    return own.get("efSearch", k) >= k
