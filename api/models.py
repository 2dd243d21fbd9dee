"""Request and response models of the HTTP API (the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from engine import Filter, HistoryEvent, Results, ScoredItem

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


class _Query(_Strict):
    k: int = Field(10, ge=1, description="how many items to return (at most the server's max_k)")
    filters: list[FilterSpec] = Field(default_factory=list, description="ANDed conditions")
    exclude: list[ItemId] = Field(default_factory=list, description="ids never to return")


class RecommendRequest(_Query):
    """A user: what they interacted with and/or what they are interested in."""

    history: list[HistoryItem] = Field(
        default_factory=list, description="items with optional weight and time, or bare ids"
    )
    interests: str | None = Field(None, description="free text, e.g. 'space adventure'")
    exclude_seen: bool = Field(True, description="never return items from the history")

    def events(self) -> list[HistoryEvent]:
        return [h.to_event() for h in self.history]


class SearchRequest(_Query):
    """Free-text search by meaning."""

    text: str = Field(min_length=1, description="what to look for")


class Item(BaseModel):
    id: str
    score: float = Field(description="cosine similarity, or popularity for the fallback")
    text: str = Field(description="the text the item was embedded from")
    metadata: dict[str, Any]

    @classmethod
    def of(cls, item: ScoredItem) -> Item:
        return cls(id=item.id, score=item.score, text=item.text, metadata=item.metadata)


class ResultsResponse(BaseModel):
    items: list[Item]
    source: str = Field(description="what the ranking came from: history, interests, popularity...")
    unknown_ids: list[str] = Field(description="ids in the request that the index does not hold")

    @classmethod
    def of(cls, results: Results) -> ResultsResponse:
        return cls(
            items=[Item.of(i) for i in results.items],
            source=results.source,
            unknown_ids=list(results.unknown_ids),
        )


class Health(BaseModel):
    status: str
    index: str
    version: str
    items: int


class ErrorBody(BaseModel):
    detail: str
    field: str | None = None
    type: str
