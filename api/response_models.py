"""Response models of the HTTP API (the OpenAPI schema at ``/docs``): query results, health,
reload and write outcomes, and the one error body every failure uses. Import them through
:mod:`api.models`.

Unlike requests they are not strict: the server builds them, so unknown keys cannot occur.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from engine import Reason, Results, ScoredItem


class ReasonOut(BaseModel):
    kind: Literal["item", "interests"]
    item_id: str | None = Field(None, description="the history item, for kind 'item'")
    label: str | None = Field(None, description="its title: 'because you liked <label>'")
    share: float = Field(description="share of the item's pull that this reason gives")
    similarity: float

    @classmethod
    def of(cls, reason: Reason) -> ReasonOut:
        return cls(
            kind="item" if reason.kind == "item" else "interests",
            item_id=reason.item_id,
            label=reason.label,
            share=reason.share,
            similarity=reason.similarity,
        )


class Item(BaseModel):
    id: str
    score: float = Field(description="cosine similarity, or popularity for the fallback")
    text: str = Field(description="the text the item was embedded from")
    metadata: dict[str, Any]
    reasons: list[ReasonOut] = Field(default_factory=list, description="with explain: true")

    @classmethod
    def of(cls, item: ScoredItem) -> Item:
        return cls(
            id=item.id,
            score=item.score,
            text=item.text,
            metadata=item.metadata,
            reasons=[ReasonOut.of(r) for r in item.reasons],
        )


class Truncated(BaseModel):
    """A text longer than the model reads: only its first ``limit`` tokens shaped the answer."""

    field: str
    tokens: int
    limit: int


class ResultsResponse(BaseModel):
    items: list[Item]
    source: str = Field(description="what the ranking came from: history, interests, popularity...")
    unknown_ids: list[str] = Field(description="ids in the request that the index does not hold")
    truncated: list[Truncated] = Field(
        default_factory=list, description="texts past the model's window (max_seq_length)"
    )

    @classmethod
    def of(cls, results: Results, truncated: list[Truncated] | None = None) -> ResultsResponse:
        return cls(
            items=[Item.of(i) for i in results.items],
            source=results.source,
            unknown_ids=list(results.unknown_ids),
            truncated=truncated or [],
        )


class Health(BaseModel):
    """Liveness. With a read key configured, callers without it see only ``status``."""

    status: str
    index: str | None = None
    version: str | None = None
    items: int | None = None
    reloads: int = Field(0, description="hot reloads that replaced the bundle")
    reload_failures: int = Field(0, description="reloads refused; the old bundle kept serving")
    last_reload_error: str | None = Field(
        None, description="why the last reload was refused; cleared by a successful one"
    )
    pending_updates: int = Field(0, description="live changes not yet folded by a compaction")
    compactions: int = Field(0, description="background compactions that replaced the version")
    last_compaction_error: str | None = None


class ReloadResponse(BaseModel):
    reloaded: bool = Field(description="false when the served version is already current")
    previous: str = Field(description="the version served before the call")
    version: str = Field(description="the version served now")
    items: int


class WriteResponse(BaseModel):
    """What a write changed; it is durable (in the update log, fsynced) when this is sent."""

    version: str = Field(description="the version the changes were logged against")
    seq: int = Field(description="the update log's batch number that holds them (0: none)")
    items: int = Field(description="items served now")
    created: list[str]
    replaced: list[str]
    deleted: list[str]
    missing: list[str] = Field(description="ids asked to be deleted that the index does not hold")
    pending_updates: int = Field(description="tombstones plus appended rows awaiting compaction")


class CompactResponse(BaseModel):
    compacted: bool = Field(description="false when there were no live updates to fold")
    version: str = Field(description="the version served now")
    items: int
    folded: int = Field(0, description="tombstones removed plus appended rows moved into the index")
    carried: int = Field(0, description="batches logged during the compaction, kept")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error: what went wrong, which request field (if one), and the error's kind."""

    detail: str
    field: str | None = None
    type: str
    errors: list[FieldError] | None = Field(None, description="all invalid fields (422 only)")


class Ready(BaseModel):
    ready: bool
    version: str | None = None
