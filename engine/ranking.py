"""Candidates → final ranking: pool sizing, re-ranking stages and their per-field caches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from engine.ann import Searcher
from engine.bundle import Bundle
from engine.errors import InvalidArgument
from engine.rerank import FieldCodes, RerankConfig, RerankContext, Transform, rerank
from engine.rerankers import TextReranker
from engine.strategies import Candidates

# Re-ranking never looks at more candidates than this, whatever k and the pool factor ask.
MAX_POOL = 2000
CROWDING_MIN_POOL = 256
# Crowding may leave a list short; the pool then grows this many times before giving up.
POOL_GROWTH_ROUNDS = 3


class Ranker:
    """Runs a candidate generator and the configured re-ranking stages for one bundle."""

    def __init__(
        self, bundle: Bundle, searcher: Searcher, text_reranker: TextReranker | None = None
    ):
        self.bundle = bundle
        self.searcher = searcher
        self.text_reranker = text_reranker
        self._boost_cache: dict[tuple[str, str], np.ndarray] = {}
        self._field_cache: dict[str, FieldCodes] = {}

    def pool_size(self, k: int, config: RerankConfig) -> int:
        if not config.needs_pool:
            return k
        pool = max(k * config.pool_factor, k + 20)
        if config.crowding is not None:
            # A cap on a common value (genre Drama) discards most of a small pool; one scan of
            # 256 costs the same as one of 40, and saves the rounds of growing the pool.
            pool = max(pool, CROWDING_MIN_POOL)
        return int(min(pool, max(MAX_POOL, k), len(self.bundle)))

    def rank(
        self,
        generate: Callable[[int], Candidates | None],
        k: int,
        config: RerankConfig,
        eligible: int,
        text: str | None = None,
    ) -> Candidates | None:
        """Top ``min(k, eligible)`` after re-ranking (fewer only if crowding cannot fill it)."""
        self.validate(config)
        pool = self.pool_size(k, config)
        context = self._context(text)
        for _ in range(POOL_GROWTH_ROUNDS + 1):
            found = generate(pool)
            if found is None:
                return None
            ranked = rerank(found, k, config, context)
            if len(ranked) >= min(k, eligible) or pool >= eligible or pool >= MAX_POOL:
                return ranked
            pool = min(pool * 4, eligible, MAX_POOL)
        return ranked

    def validate(self, config: RerankConfig) -> None:
        """Refuse options this bundle or server cannot honour, whatever the request's input."""
        if config.cross_encoder and self.text_reranker is None:
            raise InvalidArgument(
                "this server has no cross-encoder (set VECREC_CROSS_ENCODER)",
                field="rerank.cross_encoder",
            )
        for boost in config.boosts:
            self.boost_values(boost.field, boost.transform)
        if config.crowding is not None:
            self.field_codes(config.crowding.field)

    def _context(self, text: str | None) -> RerankContext:
        scorer = None
        if text is not None and self.text_reranker is not None:
            reranker, texts = self.text_reranker, self.bundle.items["text"].to_numpy(dtype=object)

            def scorer(rows: Sequence[int]) -> np.ndarray:
                return reranker.score(text, [str(texts[r]) for r in rows])

        return RerankContext(
            vectors=self.bundle.vectors,
            boost_values=self.boost_values,
            field_codes=self.field_codes,
            text_scores=scorer,
        )

    def boost_values(self, name: str, transform: Transform) -> np.ndarray:
        """``float64 (n,)`` in [0, 1]: the field's percentile rank or min-max scaling."""
        key = (name, transform)
        if key not in self._boost_cache:
            column = self._column(name, "rerank.boosts")
            if not (
                pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
            ):
                raise InvalidArgument(f"boost field {name!r} is not numeric", field="rerank.boosts")
            values = column.astype(np.float64)
            if transform == "rank":
                scaled = values.rank(pct=True, method="average")
            else:
                low, high = values.min(), values.max()
                scaled = (values - low) / (high - low) if high > low else values * 0.0
            self._boost_cache[key] = scaled.fillna(0.0).to_numpy(dtype=np.float64)
        return self._boost_cache[key]

    def field_codes(self, name: str) -> FieldCodes:
        """The field's values per row as integer codes (a list field has several per row)."""
        if name not in self._field_cache:
            column = self._column(name, "rerank.crowding")
            code_of: dict[object, int] = {}
            indptr = [0]
            codes: list[int] = []
            for value in column.tolist():
                values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
                codes.extend(code_of.setdefault(v, len(code_of)) for v in values)
                indptr.append(len(codes))
            self._field_cache[name] = FieldCodes(
                np.asarray(indptr, dtype=np.int64), np.asarray(codes, dtype=np.int64), len(code_of)
            )
        return self._field_cache[name]

    def _column(self, name: str, where: str) -> pd.Series:
        allowed = set(self.bundle.manifest.metadata_columns) | (
            {"popularity"} if self.bundle.manifest.has_popularity else set()
        )
        if name not in allowed:
            raise InvalidArgument(
                f"unknown field {name!r} (metadata fields: {', '.join(sorted(allowed)) or 'none'})",
                field=where,
            )
        return self.bundle.items[name]
