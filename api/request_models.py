"""Request models of the HTTP API (the OpenAPI schema at ``/docs``): queries, their per-request
options, and item writes. Import them through :mod:`api.models`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from engine import Boost, Crowding, Filter, HistoryEvent, QueryOptions, RerankConfig
from engine.changes import ItemFields
from engine.fusion import FusionWeights
from engine.search_params import LIMITS as SEARCH_LIMITS

ItemId = Annotated[str | int, AfterValidator(str)]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    # Unknown keys are errors (a typo must not be silently ignored); NaN/inf are refused.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HistoryItem(_Strict):
    """One thing the user interacted with; a bare id stands for ``{"item_id": id}``."""

    item_id: ItemId = Field(description="the item's id in the catalogue")
    weight: float = Field(
        1.0, description="rating or strength; negative for a dislike, 0 to ignore"
    )
    timestamp: float | None = Field(
        None, description="Unix seconds; newer events count more (recency decay)"
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_id(cls, value: Any) -> Any:
        # A bare id is shorthand; converting here keeps error paths like history[0].weight.
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return {"item_id": value}
        return value

    def to_event(self) -> HistoryEvent:
        return HistoryEvent(str(self.item_id), self.weight, self.timestamp)


class FilterSpec(_Strict):
    """One metadata condition; give exactly one of ``eq``, ``any`` or a range."""

    field: str = Field(min_length=1, description="a metadata field of the bundle")
    eq: Scalar | None = Field(None, description="equals (list field: contains)")
    any: list[Scalar] | None = Field(None, min_length=1, description="equals one of")
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FilterSpec:
        has_range = any(v is not None for v in (self.gt, self.gte, self.lt, self.lte))
        kinds = (self.eq is not None) + (self.any is not None) + has_range
        if kinds != 1:
            raise ValueError("give exactly one of eq, any, or a range (gt/gte/lt/lte)")
        return self

    def to_filter(self) -> Filter:
        return Filter(
            field=self.field,
            eq=self.eq,
            any=tuple(self.any) if self.any is not None else None,
            gt=self.gt,
            gte=self.gte,
            lt=self.lt,
            lte=self.lte,
        )


class BoostSpec(_Strict):
    """Raise scores by ``weight ×`` the item's normalised value of a numeric field."""

    field: str = Field(min_length=1, description="a numeric metadata field, e.g. popularity")
    weight: float = Field(ge=0, le=10)
    transform: Literal["rank", "minmax"] = Field(
        "rank", description="rank: percentile in the catalogue; minmax: (x - min) / (max - min)"
    )


class CrowdingSpec(_Strict):
    """At most ``max_per_value`` results share one value of ``field``."""

    field: str = Field(min_length=1, description="a metadata field; list fields count each value")
    max_per_value: int = Field(ge=1)


class RerankSpec(_Strict):
    """Re-ranking stages, applied in this order: exact, cross_encoder, boosts, mmr, crowding."""

    exact: bool = Field(True, description="re-score candidates with the stored full vectors")
    cross_encoder: bool = Field(
        False, description="re-score with the server's cross-encoder (text requests only)"
    )
    boosts: list[BoostSpec] = Field(default_factory=list, max_length=10)
    max_boost: float = Field(
        1.2, ge=1, le=10, description="no boost lifts a relevance by more than this factor"
    )
    mmr_lambda: float | None = Field(
        None, ge=0, le=1, description="MMR: 1 = pure relevance; lower = more diverse"
    )
    crowding: CrowdingSpec | None = None
    pool_factor: int = Field(4, ge=1, le=50, description="candidates fetched per result")

    def to_config(self) -> RerankConfig:
        crowding = self.crowding
        return RerankConfig(
            exact=self.exact,
            cross_encoder=self.cross_encoder,
            boosts=tuple(Boost(b.field, b.weight, b.transform) for b in self.boosts),
            max_boost=self.max_boost,
            mmr_lambda=self.mmr_lambda,
            crowding=Crowding(crowding.field, crowding.max_per_value) if crowding else None,
            pool_factor=self.pool_factor,
        )


class FusionSpec(_Strict):
    """Weights of the signals fused into one score (engine/fusion.py); omitted ones are 0."""

    content: float = Field(0.0, ge=0, le=100, description="text-vector similarity")
    collaborative: float = Field(0.0, ge=0, le=100, description="folded-in CF vectors")
    popularity: float = Field(0.0, ge=0, le=100, description="log-popularity prior")
    lexical: float = Field(0.0, ge=0, le=100, description="BM25 of the interests or search text")

    def to_weights(self) -> FusionWeights:
        return FusionWeights(self.content, self.collaborative, self.popularity, self.lexical)


class SearchParamsSpec(_Strict):
    """The approximate index's search effort for this request, over the index's tuned setting.

    A parameter that does not apply to the index's type is ignored (``nprobe`` on HNSW, both on
    a Flat index): clients need not know which index a version was built with.
    """

    ef_search: int | None = Field(
        None,
        ge=1,
        le=SEARCH_LIMITS["efSearch"],
        description="HNSW: candidate list length (higher: better recall, slower; at least k is "
        "used)",
    )
    nprobe: int | None = Field(
        None,
        ge=1,
        le=SEARCH_LIMITS["nprobe"],
        description="IVF: inverted lists scanned (above the index's nlist: all of them)",
    )

    def to_params(self) -> dict[str, int] | None:
        named = {"efSearch": self.ef_search, "nprobe": self.nprobe}
        return {name: value for name, value in named.items() if value is not None} or None


class _Query(_Strict):
    k: int = Field(10, ge=1, description="how many items to return (at most the server's max_k)")
    filters: list[FilterSpec] = Field(default_factory=list, description="ANDed conditions")
    exclude: list[ItemId] = Field(default_factory=list, description="ids never to return")
    rerank: RerankSpec | None = Field(None, description="optional re-ranking stages")
    mode: Literal["content", "collaborative", "hybrid"] | None = Field(
        None,
        description="signals to use: content (text vectors), collaborative (CF vectors), hybrid "
        "(all the index has, fused; search: dense + BM25). Default: hybrid when the index has "
        "CF vectors (search: a BM25 index), else content",
    )
    fusion: FusionSpec | None = Field(None, description="signal weights (default: the mode's)")
    search_params: SearchParamsSpec | None = Field(
        None, description="approximate index search effort (default: the index's tuned setting)"
    )

    def search_overrides(self, defaults: QueryOptions) -> Mapping[str, int] | None:
        given = self.search_params.to_params() if self.search_params is not None else None
        return given if given is not None else defaults.search_params

    def options(self, defaults: QueryOptions) -> QueryOptions:
        """The request's options over the server's defaults."""
        if (
            self.rerank is None
            and self.mode is None
            and self.fusion is None
            and self.search_params is None
        ):
            return defaults
        return QueryOptions(
            defaults.strategy,
            defaults.max_interests,
            self.rerank.to_config() if self.rerank is not None else defaults.rerank,
            defaults.explain,
            mode=self.mode or defaults.mode,
            fusion=self.fusion.to_weights() if self.fusion is not None else defaults.fusion,
            search_params=self.search_overrides(defaults),
        )


class RecommendRequest(_Query):
    """A user: what they interacted with and/or what they are interested in."""

    history: list[HistoryItem] = Field(
        default_factory=list, description="items with optional weight and time, or bare ids"
    )
    interests: str | None = Field(None, description="free text, e.g. 'space adventure'")
    exclude_seen: bool = Field(True, description="never return items from the history")
    strategy: Literal["mean", "best_score", "multi_interest"] | None = Field(
        None,
        description="mean: one weighted query; best_score: best match among liked items; "
        "multi_interest: one query per taste cluster, merged by importance (default: server's)",
    )
    max_interests: int | None = Field(
        None, ge=1, le=20, description="multi_interest: most clusters"
    )
    explain: bool = Field(False, description="name the history items or interests behind each")

    def options(self, defaults: QueryOptions) -> QueryOptions:
        return QueryOptions(
            strategy=self.strategy or defaults.strategy,
            max_interests=self.max_interests or defaults.max_interests,
            rerank=self.rerank.to_config() if self.rerank is not None else defaults.rerank,
            explain=self.explain,
            mode=self.mode or defaults.mode,
            fusion=self.fusion.to_weights() if self.fusion is not None else defaults.fusion,
            search_params=self.search_overrides(defaults),
        )

    def events(self) -> list[HistoryEvent]:
        return [h.to_event() for h in self.history]


class SearchRequest(_Query):
    """Free-text search by meaning."""

    text: str = Field(min_length=1, description="what to look for")


FieldValue = str | int | float | list[str | int | float] | None


class ItemWrite(_Strict):
    """An item as ``PUT /items/{id}`` takes it: its fields, and optionally its text."""

    fields: dict[str, FieldValue] = Field(
        default_factory=dict,
        description='metadata and template fields, e.g. {"title": "Heat (1995)", '
        '"genres": ["Action"]}; list fields take a list (or the build\'s separated string)',
    )
    text: str | None = Field(
        None,
        min_length=1,
        description="the text to embed; default: rendered from fields with the index's template",
    )

    def to_fields(self, item_id: str | int) -> ItemFields:
        return ItemFields(str(item_id), dict(self.fields), self.text)


class BatchUpsert(ItemWrite):
    id: ItemId = Field(description="the item id (ids are strings; integers are accepted)")


class BatchRequest(_Strict):
    """``POST /items:batch``: upserts and deletes, logged and applied as one batch."""

    upsert: list[BatchUpsert] = Field(default_factory=list)
    delete: list[ItemId] = Field(default_factory=list, description="ids to delete")
