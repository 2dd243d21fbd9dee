"""The query facade: recommendations, similar items and text search over one bundle.

The parts each query path shares live beside it: request limits and allowed-row masks in
:mod:`engine.request_rows`, query text embedding in :mod:`engine.query_embedder`, and turning
ranked rows into answers in :mod:`engine.answers`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from engine import hybrid
from engine.ann import Searcher
from engine.answers import (
    item_label,
    popular_candidates,
    popularity_order,
    ranked_items,
    scored_item,
    vector_candidates,
)
from engine.bundle import Bundle
from engine.embedder import Embedder
from engine.errors import NoUsableInput, UnknownItem
from engine.explain import explain
from engine.filters import Filter
from engine.gpu import GpuTwin, gpu_twin
from engine.query_cache import QueryEmbeddingCache
from engine.query_embedder import QueryEmbedder
from engine.ranking import Ranker
from engine.recommender_config import RecommenderConfig
from engine.request_rows import RequestRows
from engine.rerankers import TextReranker
from engine.results import QueryOptions, Results, ScoredItem, Source
from engine.strategies import candidates
from engine.usermodel import HistoryEvent, UserModelConfig, user_signal

# RecommenderConfig is re-exported: it was defined here and is imported from here.
__all__ = ["Recommender", "RecommenderConfig"]


class Recommender:
    """Answers queries over a loaded :class:`~engine.bundle.Bundle`.

    The embedder is needed only for text (interests, search); it is built from the manifest's
    model spec on first use unless one is given.
    """

    def __init__(
        self,
        bundle: Bundle,
        embedder: Embedder | None = None,
        config: RecommenderConfig | None = None,
        *,
        embed_threads: int | None = None,
        text_reranker: TextReranker | None = None,
        query_cache: QueryEmbeddingCache | None = None,
        gpu: GpuTwin | None = None,
    ) -> None:
        self.bundle = bundle
        self.query_cache = query_cache
        self.config = config or RecommenderConfig()
        self._text = QueryEmbedder(bundle, self.config, embedder, threads=embed_threads)
        manifest = bundle.manifest
        if self.config.device == "cuda" and gpu is None:
            gpu = gpu_twin(bundle.index)
        self.searcher = Searcher(
            bundle.index,
            bundle.vectors,
            {**manifest.index.search_params, **self.config.search_params},
            live=bundle.live,
            gpu=gpu if self.config.device == "cuda" else None,
        )
        self._rows = RequestRows.of(bundle, self.config)
        self.filter_index = self._rows.filter_index
        self.ranker = Ranker(bundle, self.searcher, text_reranker)
        self._popular_rows = popularity_order(bundle)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        embedder: Embedder | None = None,
        config: RecommenderConfig | None = None,
        embed_threads: int | None = None,
        verify: bool = True,
        text_reranker: TextReranker | None = None,
    ) -> Recommender:
        """Load and verify the bundle at ``path`` and wrap it."""
        return cls(
            Bundle.load(path, verify=verify),
            embedder,
            config,
            embed_threads=embed_threads,
            text_reranker=text_reranker,
        )

    def with_bundle(self, bundle: Bundle) -> Recommender:
        """The same recommender (model, cross-encoder, limits) over another snapshot of the
        same index, e.g. after live updates."""
        return Recommender(
            bundle,
            self._text.loaded,
            self.config,
            embed_threads=self._text.threads,
            text_reranker=self.ranker.text_reranker,
            query_cache=self.query_cache,
            # Snapshots of one version share its FAISS index: its GPU copy is reused.
            gpu=self.searcher.gpu if bundle.index is self.bundle.index else None,
        )

    # -- embedding -----------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        return self._text.model

    def warm_up(self) -> None:
        """Load the model and run one query so the first request pays no start-up cost."""
        self.embed_text("warm up", field="warm_up")

    def embed_text(self, text: str, *, field: str) -> np.ndarray:
        """``float32 (d,)`` unit vector of ``text``."""
        # The cache is read per call: the server attaches one after construction.
        return self._text.embed(text, field=field, cache=self.query_cache)

    # -- queries --------------------------------------------------------------------------------

    def recommend(
        self,
        history: Sequence[HistoryEvent] = (),
        interests: str | None = None,
        k: int = 10,
        *,
        exclude: Iterable[str] = (),
        filters: Sequence[Filter] = (),
        exclude_seen: bool = True,
        user_model: UserModelConfig | None = None,
        options: QueryOptions | None = None,
    ) -> Results:
        """Items for a user with ``history`` and/or free-text ``interests``.

        History items (when ``exclude_seen``) and ``exclude`` never come back; exactly
        ``min(k, eligible)`` items do (fewer only when a crowding cap cannot be met). Unknown
        history ids are skipped and reported. With nothing usable the most popular items are
        returned when the bundle knows popularity.
        """
        self._rows.check_k(k)
        known = self._rows.history(history)
        model = user_model or self.config.user_model
        options = options or self.config.options
        self.ranker.validate(options.rerank)
        searcher = self.searcher.with_params(options.search_params)
        text = interests if interests is not None and interests.strip() else None
        interest_vec = self.embed_text(text, field="interests") if text is not None else None
        excluded, unknown_excluded = self._rows.rows_of(exclude)
        if exclude_seen:
            excluded.extend(known.rows)
        allowed = self._rows.allowed(filters, excluded)
        vectors = (
            np.asarray(self.bundle.vectors[known.rows], dtype=np.float32)
            if known.rows
            else np.zeros((0, self.bundle.dimension), np.float32)
        )
        signal = user_signal(known.rows, vectors, known.weights, known.times, interest_vec, model)
        unknown_all = tuple(known.unknown + unknown_excluded)
        ranked = None
        fused = hybrid.for_recommend(
            self.bundle, searcher, signal, model, options, allowed, text,
            (known.rows, known.weights, known.times),
        )  # fmt: skip
        if signal.has_positive:
            generate = fused or functools.partial(
                candidates, options.strategy, signal, model, searcher,
                allowed=allowed, max_interests=options.max_interests,
            )  # fmt: skip
            eligible = self._rows.eligible(allowed)
            ranked = self.ranker.rank(generate, k, options.rerank, eligible, text)
        if ranked is None:
            return Results(self._popular(k, allowed, options), "popularity", unknown_all)
        has_history = len(signal.liked_rows) > 0
        source: Source = (
            "history+interests"
            if has_history and interest_vec is not None
            else "history"
            if has_history
            else "interests"
        )
        reasons = (
            explain(ranked.rows, self.bundle.vectors, signal, model, self.bundle.ids, self.label)
            if options.explain
            else None
        )
        return Results(ranked_items(self.bundle, ranked, reasons), source, unknown_all)

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        filters: Sequence[Filter] = (),
        exclude: Iterable[str] = (),
        options: QueryOptions | None = None,
    ) -> Results:
        """Items nearest to ``item_id`` (never the item itself)."""
        self._rows.check_k(k)
        row = self.bundle.row_of.get(str(item_id))
        if row is None:
            raise UnknownItem(str(item_id))
        excluded, unknown = self._rows.rows_of(exclude)
        excluded.append(row)
        allowed = self._rows.allowed(filters, excluded)
        query = np.asarray(self.bundle.vectors[row], dtype=np.float32)
        options = options or self.config.options
        searcher = self.searcher.with_params(options.search_params)
        items = self._ranked(searcher, query, k, allowed, options, None)
        return Results(items, "item", tuple(unknown))

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        filters: Sequence[Filter] = (),
        exclude: Iterable[str] = (),
        options: QueryOptions | None = None,
    ) -> Results:
        """Items whose text is nearest in meaning to ``text``."""
        self._rows.check_k(k)
        query = self.embed_text(text, field="text")
        excluded, unknown = self._rows.rows_of(exclude)
        allowed = self._rows.allowed(filters, excluded)
        options = options or self.config.options
        searcher = self.searcher.with_params(options.search_params)
        fused = hybrid.for_search(self.bundle, searcher, query, text, options, allowed)
        items = self._ranked(searcher, query, k, allowed, options, text, fused)
        return Results(items, "text", tuple(unknown))

    def get(self, item_id: str) -> ScoredItem:
        """The item with ``item_id`` (score 1.0)."""
        row = self.bundle.row_of.get(str(item_id))
        if row is None:
            raise UnknownItem(str(item_id))
        return scored_item(self.bundle, row, 1.0)

    # -- helpers --------------------------------------------------------------------------------

    def allowed_rows(
        self, filters: Sequence[Filter], excluded: list[int]
    ) -> tuple[np.ndarray | None, int]:
        """A request's ``bool (n,)`` allowed-row mask (None: all) and its eligible count.

        The path every query takes; bulk retrieval (engine/bulk) builds its masks here too.
        """
        allowed = self._rows.allowed(filters, excluded)
        return allowed, self._rows.eligible(allowed)

    def label(self, row: int) -> str:
        """A short human name of the item at ``row``: its title or name, else its text."""
        return item_label(self.bundle, row)

    def _ranked(
        self,
        searcher: Searcher,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        options: QueryOptions,
        text: str | None,
        fused: hybrid.Generator | None = None,
    ) -> tuple[ScoredItem, ...]:
        """One query vector (or the ``fused`` generator) through the search and re-ranking."""
        generate = fused or vector_candidates(searcher, query, allowed)
        eligible = self._rows.eligible(allowed)
        return ranked_items(
            self.bundle, self.ranker.rank(generate, k, options.rerank, eligible, text)
        )

    def _popular(
        self, k: int, allowed: np.ndarray | None, options: QueryOptions
    ) -> tuple[ScoredItem, ...]:
        """The most popular eligible items, through the same re-ranking stages (crowding...);
        the answer when a request has nothing usable."""
        if self._popular_rows is None:
            raise NoUsableInput(
                "nothing to recommend from: no known liked history item and no interests, "
                "and this bundle has no popularity to fall back on (build it with "
                "--interactions)",
                field="history",
            )
        generate, eligible = popular_candidates(self.bundle, self._popular_rows, allowed)
        ranked = self.ranker.rank(generate, k, options.rerank, eligible, None)
        return ranked_items(self.bundle, ranked)
