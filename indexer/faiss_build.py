"""Build a FAISS index from vectors and a factory string (inner product on unit vectors)."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from engine.errors import InvalidArgument
from indexer.index_choice import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, ivf_nprobe

# Enough points to place centroids well; FAISS warns (and wastes time) beyond 256 per list.
MAX_TRAINING_POINTS_PER_LIST = 256


def default_search_params(index: Any) -> dict[str, int]:
    """Search parameters to record in the manifest for an index built from any factory string."""
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexHNSW):
        return {"efSearch": HNSW_EF_SEARCH}
    if isinstance(inner, faiss.IndexIVF):
        return {"nprobe": ivf_nprobe(int(inner.nlist))}
    return {}


def build_faiss_index(vectors: np.ndarray, factory: str, *, seed: int = 1234) -> Any:
    """Train (if needed) and fill an index from ``float32 (n, d)`` unit ``vectors``."""
    n, d = vectors.shape
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected"
        raise InvalidArgument(
            f"FAISS factory string {factory!r} is not valid: {message}", field="factory"
        ) from exc
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if not index.is_trained:
        nlist = int(getattr(faiss.extract_index_ivf(index), "nlist", 1)) if _has_ivf(index) else 1
        cap = max(nlist * MAX_TRAINING_POINTS_PER_LIST, 10_000)
        if n < nlist:
            raise InvalidArgument(
                f"factory {factory!r} needs at least {nlist} items to train; the catalogue has {n}",
                field="factory",
            )
        rng = np.random.default_rng(seed)
        sample = vectors if n <= cap else vectors[np.sort(rng.choice(n, cap, replace=False))]
        try:
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        except RuntimeError as exc:
            raise InvalidArgument(
                f"cannot train {factory!r} on {n} items: {str(exc).strip().splitlines()[-1]}",
                field="factory",
            ) from exc
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    for key, value in default_search_params(index).items():
        _apply(index, key, value)
    return index


def _has_ivf(index: Any) -> bool:
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _apply(index: Any, key: str, value: int) -> None:
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    if key == "efSearch" and isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = value
    elif key == "nprobe" and isinstance(inner, faiss.IndexIVF):
        inner.nprobe = value
