"""Text re-rankers: score (query text, item text) pairs jointly, e.g. a cross-encoder.

A :class:`TextReranker` is given to the :class:`~engine.recommender.Recommender` at construction
(the server's ``VECREC_CROSS_ENCODER`` setting names a local model directory); a request opts in
with ``rerank.cross_encoder``. It applies to requests that carry text: search, and recommend with
interests. No weights can be downloaded here, so the model must be a local directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.errors import EmbedderError


@runtime_checkable
class TextReranker(Protocol):
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """``float32 (len(texts),)``: higher is more relevant to ``query``."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` from a local directory, loaded on first use."""

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.path = Path(path)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            if not self.path.is_dir():
                raise EmbedderError(
                    f"cross-encoder {self.path} is not a local model directory",
                    field="cross_encoder",
                )
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(str(self.path), device=self.device)
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load cross-encoder {self.path}: {exc}", field="cross_encoder"
                ) from exc
        return self._model

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self._load().predict(
            [(query, text) for text in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, 0]
