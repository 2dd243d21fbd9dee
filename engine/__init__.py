"""vecrec engine: load an index bundle and answer recommendation, similarity and search queries.

Public surface (everything else is internal)::

    from engine import Recommender, HistoryEvent, Filter
    rec = Recommender.open("indexes/movielens")
    rec.recommend([HistoryEvent("1", 5.0)], interests="space adventure", k=10)
"""

from engine.bundle import Bundle
from engine.embedder import (
    DEFAULT_MODEL,
    Embedder,
    HashEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)
from engine.errors import (
    BundleCorrupt,
    BundleError,
    BundleNotFound,
    CatalogError,
    EmbedderError,
    IndexLocked,
    InvalidArgument,
    NoUsableInput,
    QueryError,
    UnknownItem,
    VecrecError,
)
from engine.explain import Reason
from engine.filters import Filter
from engine.manifest import Manifest
from engine.recommender import Recommender, RecommenderConfig
from engine.rerank import Boost, Crowding, RerankConfig
from engine.rerankers import CrossEncoderReranker, TextReranker
from engine.results import QueryOptions, Results, ScoredItem
from engine.usermodel import HistoryEvent, UserModelConfig

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Boost",
    "Bundle",
    "BundleCorrupt",
    "BundleError",
    "BundleNotFound",
    "CatalogError",
    "CrossEncoderReranker",
    "Crowding",
    "Embedder",
    "EmbedderError",
    "Filter",
    "HashEmbedder",
    "HistoryEvent",
    "IndexLocked",
    "InvalidArgument",
    "Manifest",
    "NoUsableInput",
    "QueryError",
    "QueryOptions",
    "Reason",
    "Recommender",
    "RecommenderConfig",
    "RerankConfig",
    "Results",
    "ScoredItem",
    "SentenceTransformerEmbedder",
    "TextReranker",
    "UnknownItem",
    "UserModelConfig",
    "VecrecError",
    "__version__",
    "load_embedder",
]
