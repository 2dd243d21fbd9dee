"""The :class:`~engine.recommender.Recommender`'s limits and defaults, apart from the facade so
the helpers that enforce them (request rows, query embedding) can import them without it."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.results import QueryOptions
from engine.usermodel import UserModelConfig


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
