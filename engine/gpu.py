"""GPU use, when the machine has one: FAISS indexes on the GPU and embedding on CUDA.

``--gpu`` (``VECREC_GPU``) is an explicit request: without CUDA, or with a FAISS built without
GPU support (the ``faiss-cpu`` wheel this project pins), it fails with one line naming what is
missing, rather than quietly running on the CPU.

Index builds train and fill IVF and Flat indexes on the GPU and write the CPU copy (HNSW has no
GPU build in FAISS: it is built on the CPU, with a log line). FAISS's GPU indexes answer at most
:data:`GPU_MAX_K` neighbours per query, so query-time GPU search must fall back to the CPU copy
above it.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.errors import InvalidArgument

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
