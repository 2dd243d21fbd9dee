"""Build an index from vectors and a factory string (inner product on unit vectors): FAISS's
factory language, or ``hnswlibM`` for the hnswlib graph (engine/hnswlib_index.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np

from engine.errors import InvalidArgument
from engine.hnswlib_index import HnswlibIndex, build_hnswlib, is_hnswlib_factory
from engine.native_params import innermost
from indexer.index_choice import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, ivf_nprobe

# Enough points to place centroids well; FAISS warns (and wastes time) beyond 256 per list.
MAX_TRAINING_POINTS_PER_LIST = 256
_HNSW_LINKS = re.compile(r"HNSW(\d*)")

log = logging.getLogger(__name__)


def default_search_params(index: Any) -> dict[str, int]:
    """Search parameters to record in the manifest for an index built from any factory string."""
    inner = innermost(index)
    if isinstance(inner, faiss.IndexHNSW | HnswlibIndex):
        return {"efSearch": HNSW_EF_SEARCH}
    if isinstance(inner, faiss.IndexIVF):
        return {"nprobe": ivf_nprobe(int(inner.nlist))}
    return {}


def build_faiss_index(
    vectors: np.ndarray, factory: str, *, seed: int = 1234, gpu: bool = False
) -> Any:
    """Train (if needed) and fill an index from ``float32 (n, d)`` unit ``vectors``.

    With ``gpu``, IVF and Flat indexes are trained and filled on the GPU (engine/gpu.py) and
    returned as CPU indexes; HNSW, which FAISS cannot build on a GPU, is built on the CPU."""
    if is_hnswlib_factory(factory):
        if gpu:
            from engine.gpu import require_gpu

            require_gpu()
            log.info("hnswlib builds on the CPU only: --gpu does not apply to %s", factory)
        return build_hnswlib(vectors, factory, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH)
    d = vectors.shape[1]
    for links in _HNSW_LINKS.findall(factory):
        # FAISS accepts HNSW0/HNSW1 and then aborts the process inside add().
        if links and int(links) < 2:
            raise InvalidArgument(f"factory {factory!r}: HNSW needs M >= 2 links", field="factory")
    with _factory_errors(f"FAISS factory string {factory!r} is not valid"):
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    inner = innermost(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if gpu:
        from engine.gpu import require_gpu

        require_gpu()
        if isinstance(inner, faiss.IndexHNSW):
            log.info("FAISS builds HNSW on the CPU only: --gpu does not apply to %s", factory)
            gpu = False
    built = _fill(index, vectors, factory, seed, gpu)
    for key, value in default_search_params(built).items():
        _apply(built, key, value)
    return built


def _fill(index: Any, vectors: np.ndarray, factory: str, seed: int, gpu: bool) -> Any:
    n = len(vectors)
    # Read from the CPU index: a GPU index is opaque to extract_index_ivf.
    nlist = int(getattr(faiss.extract_index_ivf(index), "nlist", 1)) if _has_ivf(index) else 1
    if gpu:
        from engine.gpu import to_cpu, to_gpu

        index = to_gpu(index)
    if not index.is_trained:
        cap = max(nlist * MAX_TRAINING_POINTS_PER_LIST, 10_000)
        if n < nlist:
            raise InvalidArgument(
                f"factory {factory!r} needs at least {nlist} items to train; the catalogue has {n}",
                field="factory",
            )
        rng = np.random.default_rng(seed)
        sample = vectors if n <= cap else vectors[np.sort(rng.choice(n, cap, replace=False))]
        with _factory_errors(f"cannot train {factory!r} on {n} items"):
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
    with _factory_errors(f"factory {factory!r} cannot index the vectors"):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return to_cpu(index) if gpu else index


def apply_search_params(index: Any, params: dict[str, int]) -> None:
    """Set ``efSearch``/``nprobe`` on ``index`` itself, so its file carries them too."""
    for key, value in params.items():
        _apply(index, key, int(value))


@contextmanager
def _factory_errors(what: str) -> Iterator[None]:
    """FAISS's C++ exceptions (RuntimeError) → one-line InvalidArgument on the factory."""
    try:
        yield
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise InvalidArgument(
            f"{what}: {lines[-1] if lines else 'rejected'}", field="factory"
        ) from exc


def _has_ivf(index: Any) -> bool:
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _apply(index: Any, key: str, value: int) -> None:
    inner = innermost(index)
    if key == "efSearch" and isinstance(inner, HnswlibIndex):
        inner.ef_search = value
    elif key == "efSearch" and isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = value
    elif key == "nprobe" and isinstance(inner, faiss.IndexIVF):
        inner.nprobe = value
