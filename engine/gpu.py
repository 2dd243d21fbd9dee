"""GPU use, when the machine has one: FAISS indexes on the GPU and embedding on CUDA.

``--gpu`` (``VECREC_GPU``) is an explicit request: without CUDA, or with a FAISS built without
GPU support (the ``faiss-cpu`` wheel this project pins), it fails with one line naming what is
missing, rather than quietly running on the CPU.

Index builds train and fill IVF and Flat indexes on the GPU and write the CPU copy (HNSW has no
GPU build in FAISS: it is built on the CPU, with a log line).

At query time (:func:`gpu_twin`) an IVF index is copied to the GPU and the CPU index stays as
its twin: :class:`~engine.ann.Searcher` sends a query to the GPU copy only when the GPU can
answer it (:meth:`GpuTwin.refusal`), else to the CPU index, logging each reason once. HNSW
(no GPU search in FAISS without cuVS) and Flat (answered by an exact BLAS scan of the stored
vectors, never through FAISS) stay on the CPU.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.errors import InvalidArgument

# FAISS GPU k-selection handles at most 2048 neighbours per query, and as many probed lists.
GPU_MAX_K = 2048

log = logging.getLogger(__name__)


def gpu_problem() -> str | None:
    """Why ``--gpu`` cannot work here, or None when FAISS and torch both see a CUDA device."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "index_cpu_to_gpu"):
        return f"faiss {faiss.__version__} has no GPU support (install a GPU build of faiss)"
    if faiss.get_num_gpus() < 1:
        return "faiss sees no CUDA device"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def require_gpu() -> None:
    """Raise a one-line :class:`InvalidArgument` unless the GPU path can run."""
    problem = gpu_problem()
    if problem is not None:
        raise InvalidArgument(f"--gpu needs a CUDA GPU: {problem}", field="gpu")


_resources: Any = None


def _gpu_resources() -> Any:
    global _resources
    if _resources is None:
        import faiss

        _resources = faiss.StandardGpuResources()
    return _resources


def to_gpu(index: Any) -> Any:
    """A GPU copy of a CPU ``index`` (device 0)."""
    import faiss

    require_gpu()
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


def to_cpu(index: Any) -> Any:
    import faiss

    return faiss.index_gpu_to_cpu(index)


class GpuTwin:
    """The GPU copy of a CPU index, and when a query may use it.

    Shared by every view of a searcher (per-request parameters) and by the snapshots of one
    version (live updates), so each fallback reason is logged once per loaded index, not once
    per query; :attr:`fallbacks` counts them all.
    """

    def __init__(self, index: Any) -> None:
        self.index = index
        self.fallbacks: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        # FAISS GPU indexes are not safe to search from several threads at once (HTTP
        # handlers run in a thread pool); the GPU is one device anyway.
        self._search_lock = threading.Lock()

    @staticmethod
    def refusal(k: int, filtered: bool, params: Mapping[str, int]) -> str | None:
        """Why the GPU copy cannot answer this search (None: it can)."""
        if k > GPU_MAX_K:
            return f"k above {GPU_MAX_K}"
        if filtered:
            # GPU IVF searches take SearchParametersIVF without an ID selector.
            return "filter, exclusion or deleted rows (an ID selector)"
        if params.get("nprobe", 0) > GPU_MAX_K:
            return f"nprobe above {GPU_MAX_K}"
        return None

    def fell_back(self, reason: str) -> None:
        with self._lock:
            self.fallbacks[reason] += 1
            first = reason not in self._logged
            self._logged.add(reason)
        if first:
            log.warning(
                "GPU index cannot answer: %s; searching the CPU index (logged once)", reason
            )

    def search(self, queries: np.ndarray, k: int, params: Any = None) -> tuple[Any, Any]:
        with self._search_lock:
            if params is None:
                return self.index.search(queries, k)
            return self.index.search(queries, k, params=params)


def gpu_twin(index: Any) -> GpuTwin | None:
    """The GPU copy of ``index`` when one would be searched, else None (with a log line).

    Raises :class:`InvalidArgument` (one line) when the machine has no usable GPU.
    """
    import faiss

    from engine.hnswlib_index import HnswlibIndex
    from engine.native_params import innermost

    require_gpu()
    inner = innermost(index)
    if isinstance(inner, HnswlibIndex):
        log.info("hnswlib has no GPU search: the hnswlib index stays on the CPU")
        return None
    if isinstance(inner, faiss.IndexHNSW):
        log.info(
            "FAISS has no GPU HNSW search: the %s index stays on the CPU", type(inner).__name__
        )
        return None
    if isinstance(inner, faiss.IndexFlat):
        log.info("a Flat index is answered by an exact scan of the vectors: it stays on the CPU")
        return None
    try:
        return GpuTwin(to_gpu(index))
    except RuntimeError as exc:  # a type or code size FAISS GPU does not implement
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("cannot copy the index to the GPU (%s): it stays on the CPU", first)
        return None
