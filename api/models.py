"""Request and response models of the HTTP API (the OpenAPI schema at ``/docs``).

The one import for every model: requests are defined in :mod:`api.request_models`, responses in
:mod:`api.response_models`, so neither file outgrows one concern.
"""

from __future__ import annotations

from api.request_models import (
    BatchRequest,
    BatchUpsert,
    BoostSpec,
    CrowdingSpec,
    FieldValue,
    FilterSpec,
    FusionSpec,
    HistoryItem,
    ItemId,
    ItemWrite,
    RecommendRequest,
    RerankSpec,
    Scalar,
    SearchParamsSpec,
    SearchRequest,
)
from api.response_models import (
    CompactResponse,
    ErrorBody,
    FieldError,
    Health,
    Item,
    Ready,
    ReasonOut,
    ReloadResponse,
    ResultsResponse,
    Truncated,
    WriteResponse,
)

__all__ = [
    "BatchRequest",
    "BatchUpsert",
    "BoostSpec",
    "CompactResponse",
    "CrowdingSpec",
    "ErrorBody",
    "FieldError",
    "FieldValue",
    "FilterSpec",
    "FusionSpec",
    "Health",
    "HistoryItem",
    "Item",
    "ItemId",
    "ItemWrite",
    "Ready",
    "ReasonOut",
    "RecommendRequest",
    "ReloadResponse",
    "RerankSpec",
    "ResultsResponse",
    "Scalar",
    "SearchParamsSpec",
    "SearchRequest",
    "Truncated",
    "WriteResponse",
]
