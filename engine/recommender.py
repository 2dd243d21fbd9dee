"""The query facade: recommendations, similar items and text search over one bundle."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.ann import Searcher
from engine.bundle import Bundle
from engine.embedder import Embedder, load_embedder
from engine.errors import EmbedderError, InvalidArgument, NoUsableInput, UnknownItem
from engine.filters import Filter, FilterIndex
from engine.usermodel import HistoryEvent, UserModelConfig, build_query, validate_history

Source = Literal["history", "interests", "history+interests", "popularity", "item", "text"]


@dataclass(frozen=True)
class RecommenderConfig:
    """Engine-side limits and defaults."""

    max_k: int = 1000
    max_history: int = 5000
    max_text_chars: int = 10_000
    user_model: UserModelConfig = field(default_factory=UserModelConfig)
    # Per-index search parameter overrides (efSearch, nprobe); the manifest's apply otherwise.
    search_params: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredItem:
    """One result: the item, its similarity (or popularity, for the fallback) and its metadata."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Results:
    """A ranked answer. ``unknown_ids`` lists history or exclude ids the bundle does not hold."""

    items: tuple[ScoredItem, ...]
    source: Source
    unknown_ids: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


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
    ) -> None:
        self.bundle = bundle
        self.config = config or RecommenderConfig()
        self._embedder = embedder
        self._embed_threads = embed_threads
        if embedder is not None:
            self._check_embedder(embedder)
        manifest = bundle.manifest
        self.searcher = Searcher(
            bundle.index,
            bundle.vectors,
            {**manifest.index.search_params, **self.config.search_params},
        )
        filterable = list(manifest.metadata_columns) + (
            ["popularity"] if manifest.has_popularity else []
        )
        self.filter_index = FilterIndex(bundle.items, filterable, manifest.list_columns)
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
    ) -> Recommender:
        """Load and verify the bundle at ``path`` and wrap it."""
        return cls(Bundle.load(path, verify=verify), embedder, config, embed_threads=embed_threads)

    # -- embedding -----------------------------------------------------------------------------

    def _check_embedder(self, embedder: Embedder) -> None:
        expected = self.bundle.manifest.model
        if embedder.dimension != expected.dimension:
            raise EmbedderError(
                f"embedder {embedder.spec!r} gives {embedder.dimension}-d vectors; the bundle "
                f"was built with {expected.spec!r} ({expected.dimension}-d)",
                field="model",
            )

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            embedder = load_embedder(self.bundle.manifest.model.spec, threads=self._embed_threads)
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
    ) -> Results:
        """Items for a user with ``history`` and/or free-text ``interests``.

        History items (when ``exclude_seen``) and ``exclude`` never come back; exactly
        ``min(k, eligible)`` items do. Unknown history ids are skipped and reported. With nothing
        usable the most popular items are returned when the bundle knows popularity.
        """
        self._check_k(k)
        if len(history) > self.config.max_history:
            raise InvalidArgument(
                f"history has {len(history)} entries; the limit is {self.config.max_history}",
                field="history",
            )
        validate_history(history)
        model = user_model or self.config.user_model
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
        interest_vec = None
        if interests is not None and interests.strip():
            interest_vec = self.embed_text(interests, field="interests")
        excluded, unknown_excluded = self._rows_of(exclude)
        if exclude_seen:
            excluded.extend(known_rows)
        allowed = self._allowed(filters, excluded)
        query = build_query(
            self.bundle.vectors[known_rows]
            if known_rows
            else np.zeros((0, self.bundle.dimension), np.float32),
            weights,
            times,
            interest_vec,
            model,
        )
        unknown_all = tuple(unknown + unknown_excluded)
        if query is None:
            if self._popular_rows is None:
                raise NoUsableInput(
                    "nothing to recommend from: no known liked history item and no interests, "
                    "and this bundle has no popularity to fall back on (build it with "
                    "--interactions)",
                    field="history",
                )
            return Results(self._popular(k, allowed), "popularity", unknown_all)
        has_history = any(w - model.neutral_weight > 0 for w in weights)
        source: Source = (
            "history+interests"
            if has_history and interest_vec is not None
            else "history"
            if has_history
            else "interests"
        )
        return Results(self._search(query, k, allowed), source, unknown_all)

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        filters: Sequence[Filter] = (),
        exclude: Iterable[str] = (),
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
        return Results(self._search(query, k, allowed), "item", tuple(unknown))

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        filters: Sequence[Filter] = (),
        exclude: Iterable[str] = (),
    ) -> Results:
        """Items whose text is nearest in meaning to ``text``."""
        self._check_k(k)
        query = self.embed_text(text, field="text")
        excluded, unknown = self._rows_of(exclude)
        allowed = self._allowed(filters, excluded)
        return Results(self._search(query, k, allowed), "text", tuple(unknown))

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
        rows, unknown = [], []
        for item_id in ids:
            row = self.bundle.row_of.get(str(item_id))
            if row is None:
                unknown.append(str(item_id))
            else:
                rows.append(row)
        return rows, unknown

    def _allowed(self, filters: Sequence[Filter], excluded: list[int]) -> np.ndarray | None:
        mask = self.filter_index.mask(filters)
        if excluded:
            if mask is None:
                mask = np.ones(len(self.bundle), dtype=bool)
            mask[excluded] = False
        return mask

    def _search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[ScoredItem, ...]:
        scores, rows = self.searcher.search(query[None, :], k, allowed)
        return tuple(
            self._item(int(row), float(score))
            for score, row in zip(scores[0], rows[0], strict=True)
            if row >= 0
        )

    def _popular(self, k: int, allowed: np.ndarray | None) -> tuple[ScoredItem, ...]:
        assert self._popular_rows is not None and self.bundle.popularity is not None
        rows = (
            self._popular_rows
            if allowed is None
            else self._popular_rows[allowed[self._popular_rows]]
        )
        return tuple(self._item(int(r), float(self.bundle.popularity[r])) for r in rows[:k])

    def _item(self, row: int, score: float) -> ScoredItem:
        record = self.bundle.item_record(row)
        item_id = str(record.pop("id"))
        text = str(record.pop("text"))
        if score != score or math.isinf(score):
            score = 0.0
        return ScoredItem(id=item_id, score=score, text=text, metadata=record)
