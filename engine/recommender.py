"""The query facade: recommendations, similar items and text search over one bundle."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import hybrid
from engine.ann import Searcher
from engine.bundle import Bundle
from engine.embedder import Embedder, check_backend, load_embedder
from engine.errors import EmbedderError, InvalidArgument, NoUsableInput, UnknownItem
from engine.explain import Reason, explain
from engine.filters import Filter, FilterIndex
from engine.gpu import GpuTwin, gpu_twin
from engine.onnx_backend import bundle_export_dir
from engine.query_cache import QueryEmbeddingCache
from engine.ranking import Ranker
from engine.rerankers import TextReranker
from engine.results import QueryOptions, Results, ScoredItem, Source
from engine.strategies import Candidates, candidates
from engine.usermodel import HistoryEvent, UserModelConfig, user_signal, validate_history


@dataclass(frozen=True)
class RecommenderConfig:
    """Engine-side limits and defaults."""

    max_k: int = 1000
    max_history: int = 5000
    max_text_chars: int = 10_000
    max_filters: int = 32
    max_exclude: int = 10_000
    user_model: UserModelConfig = field(default_factory=UserModelConfig)
    # Per-index search parameter overrides (efSearch, nprobe); the manifest's apply otherwise.
    search_params: dict[str, int] = field(default_factory=dict)
    # Used when a request gives no options.
    options: QueryOptions = field(default_factory=QueryOptions)
    # Query embedding backend (torch, onnx, onnx-int8); None: the one the bundle was built with.
    backend: str | None = None
    # Embed queries with a backend whose vectors differ from the bundle's (int8 vs fp32) anyway.
    allow_backend_mismatch: bool = False
    device: str = "cpu"  # cuda: embed queries on the GPU and search IVF indexes there


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
        self._embedder = embedder
        self._embed_threads = embed_threads
        if embedder is not None:
            self._check_embedder(embedder)
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
        filterable = list(manifest.metadata_columns) + (
            ["popularity"] if manifest.has_popularity else []
        )
        self.filter_index = FilterIndex(bundle.items, filterable, manifest.list_columns)
        self.ranker = Ranker(bundle, self.searcher, text_reranker)
        self._popular_rows: np.ndarray | None = None
        if bundle.popularity is not None:
            # Most popular first; ties keep catalogue order so answers are deterministic.
            self._popular_rows = np.argsort(-bundle.popularity, kind="stable")

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
            self._embedder,
            self.config,
            embed_threads=self._embed_threads,
            text_reranker=self.ranker.text_reranker,
            query_cache=self.query_cache,
            # Snapshots of one version share its FAISS index: its GPU copy is reused.
            gpu=self.searcher.gpu if bundle.index is self.bundle.index else None,
        )

    # -- embedding -----------------------------------------------------------------------------

    def _check_embedder(self, embedder: Embedder) -> None:
        expected = self.bundle.manifest.model
        if embedder.dimension != expected.dimension:
            raise EmbedderError(
                f"embedder {embedder.spec!r} gives {embedder.dimension}-d vectors; the bundle "
                f"was built with {expected.spec!r} ({expected.dimension}-d)",
                field="model",
            )
        check_backend(expected.backend, embedder, allow_mismatch=self.config.allow_backend_mismatch)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            model = self.bundle.manifest.model
            embedder = load_embedder(
                model.spec,
                threads=self._embed_threads,
                backend=self.config.backend or model.backend,
                export_dir=bundle_export_dir(self.bundle.path),
                device=self.config.device,
            )
            self._check_embedder(embedder)
            self._embedder = embedder
        return self._embedder

    def warm_up(self) -> None:
        """Load the model and run one query so the first request pays no start-up cost."""
        self.embed_text("warm up", field="warm_up")

    def embed_text(self, text: str, *, field: str) -> np.ndarray:
        """``float32 (d,)`` unit vector of ``text``."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument(f"{field} must be non-empty text", field=field)
        if len(text) > self.config.max_text_chars:
            raise InvalidArgument(
                f"{field} is {len(text)} characters; the limit is {self.config.max_text_chars}",
                field=field,
            )
        if self.query_cache is not None:
            return self.query_cache.get(text, lambda t: self.embedder.embed([t])[0])
        return self.embedder.embed([text])[0]

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
        self._check_k(k)
        if len(history) > self.config.max_history:
            raise InvalidArgument(
                f"history has {len(history)} entries; the limit is {self.config.max_history}",
                field="history",
            )
        validate_history(history)
        model = user_model or self.config.user_model
        options = options or self.config.options
        self.ranker.validate(options.rerank)
        searcher = self.searcher.with_params(options.search_params)
        known_rows: list[int] = []
        weights: list[float] = []
        times: list[float | None] = []
        unknown: list[str] = []
        for event in history:
            row = self.bundle.row_of.get(str(event.item_id))
            if row is None:
                unknown.append(str(event.item_id))
                continue
            known_rows.append(row)
            weights.append(event.weight)
            times.append(event.timestamp)
        text = interests if interests is not None and interests.strip() else None
        interest_vec = self.embed_text(text, field="interests") if text is not None else None
        excluded, unknown_excluded = self._rows_of(exclude)
        if exclude_seen:
            excluded.extend(known_rows)
        allowed = self._allowed(filters, excluded)
        vectors = (
            np.asarray(self.bundle.vectors[known_rows], dtype=np.float32)
            if known_rows
            else np.zeros((0, self.bundle.dimension), np.float32)
        )
        signal = user_signal(known_rows, vectors, weights, times, interest_vec, model)
        unknown_all = tuple(unknown + unknown_excluded)
        ranked = None
        fused = hybrid.for_recommend(
            self.bundle, searcher, signal, model, options, allowed, text,
            (known_rows, weights, times),
        )  # fmt: skip
        if signal.has_positive:
            ranked = self.ranker.rank(
                fused
                or (
                    lambda pool: candidates(
                        options.strategy,
                        signal,
                        model,
                        searcher,
                        pool,
                        allowed,
                        max_interests=options.max_interests,
                    )
                ),
                k,
                options.rerank,
                self._eligible(allowed),
                text,
            )
        if ranked is None:
            if self._popular_rows is None:
                raise NoUsableInput(
                    "nothing to recommend from: no known liked history item and no interests, "
                    "and this bundle has no popularity to fall back on (build it with "
                    "--interactions)",
                    field="history",
                )
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
            else [()] * len(ranked)
        )
        items = tuple(
            self._item(int(row), float(score), why)
            for row, score, why in zip(ranked.rows, ranked.scores, reasons, strict=True)
        )
        return Results(items, source, unknown_all)

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
        self._check_k(k)
        row = self.bundle.row_of.get(str(item_id))
        if row is None:
            raise UnknownItem(str(item_id))
        excluded, unknown = self._rows_of(exclude)
        excluded.append(row)
        allowed = self._allowed(filters, excluded)
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
        self._check_k(k)
        query = self.embed_text(text, field="text")
        excluded, unknown = self._rows_of(exclude)
        allowed = self._allowed(filters, excluded)
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
        return self._item(row, 1.0)

    # -- helpers --------------------------------------------------------------------------------

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise InvalidArgument(f"k must be an integer from 1 to {self.config.max_k}", field="k")

    def _rows_of(self, ids: Iterable[str]) -> tuple[list[int], list[str]]:
        ids = list(ids)
        if len(ids) > self.config.max_exclude:
            raise InvalidArgument(
                f"exclude has {len(ids)} ids; the limit is {self.config.max_exclude}",
                field="exclude",
            )
        rows, unknown = [], []
        for item_id in ids:
            row = self.bundle.row_of.get(str(item_id))
            if row is None:
                unknown.append(str(item_id))
            else:
                rows.append(row)
        return rows, unknown

    def allowed_rows(
        self, filters: Sequence[Filter], excluded: list[int]
    ) -> tuple[np.ndarray | None, int]:
        """A request's ``bool (n,)`` allowed-row mask (None: all) and its eligible count.

        The path every query takes; bulk retrieval (engine/bulk) builds its masks here too.
        """
        allowed = self._allowed(filters, excluded)
        return allowed, self._eligible(allowed)

    def _allowed(self, filters: Sequence[Filter], excluded: list[int]) -> np.ndarray | None:
        if len(filters) > self.config.max_filters:
            raise InvalidArgument(
                f"{len(filters)} filters; the limit is {self.config.max_filters}", field="filters"
            )
        mask = self.filter_index.mask(filters)
        live = self.bundle.live
        if live is not None:  # tombstoned rows: deleted or replaced by live updates
            mask = live.copy() if mask is None else mask & live
        if excluded:
            if mask is None:
                mask = np.ones(len(self.bundle), dtype=bool)
            mask[excluded] = False
        return mask

    def label(self, row: int) -> str:
        """A short human name of the item at ``row``: its title or name, else its text."""
        record = self.bundle.item_record(row)
        for key in ("title", "name"):
            if isinstance(record.get(key), str) and record[key]:
                return str(record[key])
        return str(record["text"])[:80]

    def _eligible(self, allowed: np.ndarray | None) -> int:
        return len(self.bundle) if allowed is None else int(np.count_nonzero(allowed))

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

        def generate(pool: int) -> Candidates:
            scores, rows = searcher.search(query[None, :], pool, allowed)
            keep = rows[0] >= 0
            return Candidates(rows[0][keep], scores[0][keep], query)

        ranked = self.ranker.rank(
            fused or generate, k, options.rerank, self._eligible(allowed), text
        )
        assert ranked is not None
        return tuple(
            self._item(int(row), float(score))
            for row, score in zip(ranked.rows, ranked.scores, strict=True)
        )

    def _popular(
        self, k: int, allowed: np.ndarray | None, options: QueryOptions
    ) -> tuple[ScoredItem, ...]:
        """The most popular eligible items, through the same re-ranking stages (crowding...)."""
        popular, popularity = self._popular_rows, self.bundle.popularity
        assert popular is not None and popularity is not None
        rows = popular if allowed is None else popular[allowed[popular]]

        def generate(pool: int) -> Candidates:
            chosen = rows[:pool]
            # Scores are the popularity counts; the order is the ranking (merged=True).
            return Candidates(chosen, popularity[chosen].astype(np.float32), merged=True)

        ranked = self.ranker.rank(generate, k, options.rerank, len(rows), None)
        assert ranked is not None
        return tuple(
            self._item(int(r), float(s)) for r, s in zip(ranked.rows, ranked.scores, strict=True)
        )

    def _item(self, row: int, score: float, reasons: tuple[Reason, ...] = ()) -> ScoredItem:
        record = self.bundle.item_record(row)
        item_id = str(record.pop("id"))
        text = str(record.pop("text"))
        if score != score or math.isinf(score):
            score = 0.0
        return ScoredItem(id=item_id, score=score, text=text, metadata=record, reasons=reasons)
