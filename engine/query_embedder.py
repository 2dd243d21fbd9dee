"""Query text to vectors for one bundle: the model the bundle was built with, loaded on first
use (only text queries need it), and checked to give vectors comparable with the bundle's."""

from __future__ import annotations

import numpy as np

from engine.bundle import Bundle
from engine.embedder import Embedder, check_backend, load_embedder
from engine.errors import EmbedderError, InvalidArgument
from engine.onnx_backend import bundle_export_dir
from engine.query_cache import QueryEmbeddingCache
from engine.recommender_config import RecommenderConfig


class QueryEmbedder:
    """Embeds query texts within ``config``'s length limit; a given ``embedder`` is checked at
    once, one built from the manifest's model spec on first use."""

    def __init__(
        self,
        bundle: Bundle,
        config: RecommenderConfig,
        embedder: Embedder | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.bundle = bundle
        self.config = config
        self.threads = threads
        self.loaded = embedder
        if embedder is not None:
            self._check(embedder)

    def _check(self, embedder: Embedder) -> None:
        expected = self.bundle.manifest.model
        if embedder.dimension != expected.dimension:
            raise EmbedderError(
                f"embedder {embedder.spec!r} gives {embedder.dimension}-d vectors; the bundle "
                f"was built with {expected.spec!r} ({expected.dimension}-d)",
                field="model",
            )
        check_backend(expected.backend, embedder, allow_mismatch=self.config.allow_backend_mismatch)

    @property
    def model(self) -> Embedder:
        if self.loaded is None:
            model = self.bundle.manifest.model
            embedder = load_embedder(
                model.spec,
                threads=self.threads,
                backend=self.config.backend or model.backend,
                export_dir=bundle_export_dir(self.bundle.path),
                device=self.config.device,
            )
            self._check(embedder)
            self.loaded = embedder
        return self.loaded

    def embed(self, text: str, *, field: str, cache: QueryEmbeddingCache | None) -> np.ndarray:
        """``float32 (d,)`` unit vector of ``text``."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument(f"{field} must be non-empty text", field=field)
        if len(text) > self.config.max_text_chars:
            raise InvalidArgument(
                f"{field} is {len(text)} characters; the limit is {self.config.max_text_chars}",
                field=field,
            )
        if cache is not None:
            return cache.get(text, lambda t: self.model.embed([t])[0])
        return self.model.embed([text])[0]
