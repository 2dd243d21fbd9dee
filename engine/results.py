"""What queries take and return: per-request options and ranked results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import InvalidArgument
from engine.explain import Reason
from engine.fusion import MODES, FusionWeights
from engine.rerank import RerankConfig
from engine.search_params import check_search_params
from engine.strategies import Strategy, check_strategy

Source = Literal["history", "interests", "history+interests", "popularity", "item", "text"]


@dataclass(frozen=True)
class QueryOptions:
    """How one request turns its input into a ranking (defaults: README, "Recommendations")."""

    # multi_interest beats the foundation's mean query on MovieLens NDCG@10 (validation and
    # test), serves every taste of a user and keeps interests text in play (bench/RESULTS.md).
    strategy: Strategy = "multi_interest"
    max_interests: int = 3
    rerank: RerankConfig = field(default_factory=RerankConfig)
    explain: bool = False
    # content | collaborative | hybrid (engine/hybrid.py); None: hybrid when the bundle has
    # collaborative vectors (search: a BM25 index), else content.
    mode: str | None = None
    # Signal weights of the fusion rule (engine/fusion.py); None: the mode's tuned defaults.
    fusion: FusionWeights | None = None
    # This request's efSearch/nprobe over the index's tuned ones (engine/search_params.py);
    # None or {}: the Recommender's. Parameters that do not apply to the index are ignored.
    search_params: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        check_strategy(self.strategy, self.max_interests)
        if self.search_params is not None:
            # A private copy: the caller's dict may change after the request has started.
            checked = check_search_params(self.search_params, field="search_params")
            object.__setattr__(self, "search_params", checked)
        if self.mode is not None and self.mode not in MODES:
            raise InvalidArgument(
                f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})", field="mode"
            )


@dataclass(frozen=True)
class ScoredItem:
    """One result: the item, its score, its metadata and (when asked) why it was chosen.

    The score is the cosine similarity (or the strategy's score; popularity for the fallback;
    the boosted relevance when boosts are on).
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class Results:
    """A ranked answer. ``unknown_ids`` lists history or exclude ids the bundle does not hold."""

    items: tuple[ScoredItem, ...]
    source: Source
    unknown_ids: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]
