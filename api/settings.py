"""Server settings, read from the environment (prefix ``VECREC_``) at the API edge only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine import QueryOptions, RecommenderConfig
from engine.writes import CompactionPolicy


class Settings(BaseSettings):
    """``VECREC_INDEX=indexes/movielens VECREC_PORT=8000 ...``"""

    model_config = SettingsConfigDict(env_prefix="VECREC_", extra="ignore")

    index: Path = Field(Path("indexes/movielens"), description="bundle or indexes/NAME directory")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_k: int = Field(1000, ge=1, le=100_000, description="largest k a request may ask for")
    max_history: int = Field(5000, ge=1, description="most history entries per request")
    max_text_chars: int = Field(10_000, ge=1, description="longest interests/search text")
    # One torch thread per process: a second thread slows single queries ~20x when cores are
    # shared with FAISS or other workers (measured 26 ms vs 508 ms).
    embed_threads: int = Field(1, ge=1)
    # Each request searches one query; OpenMP teams per request would oversubscribe the cores
    # that uvicorn's thread pool already shares out.
    faiss_threads: int = Field(1, ge=1)
    # numpy's BLAS threads per process, for the same reason (bench/http_bench.py, issue 7).
    blas_threads: int = Field(1, ge=1)
    model: str | None = Field(None, description="override the bundle's model spec (a local path)")
    warm_up: bool = Field(True, description="load the model at start-up, not on the first query")
    strategy: Literal["mean", "best_score", "multi_interest"] = Field(
        "multi_interest", description="the query strategy of requests that name none"
    )
    cross_encoder: str | None = Field(
        None, description="local cross-encoder model directory for rerank.cross_encoder"
    )
    api_key: SecretStr | None = Field(
        None, description="bearer key of the /admin routes; unset, they answer 403"
    )
    reload_interval: float = Field(
        0, ge=0, description="seconds between checks of CURRENT for a new version; 0: off"
    )
    backend: Literal["torch", "onnx", "onnx-int8"] | None = Field(
        None, description="query embedding backend; default: the one the bundle was built with"
    )
    allow_backend_mismatch: bool = Field(
        False, description="embed queries with a backend incompatible with the bundle's anyway"
    )
    gpu: bool = Field(
        False,
        description="embed queries on CUDA and search IVF indexes on a GPU copy (CPU fallback "
        "for what the GPU cannot answer); fails at start without a GPU",
    )
    max_batch: int = Field(1000, ge=1, description="most upserts plus deletes per write request")
    max_filters: int = Field(32, ge=1, description="most filter conditions per request")
    max_exclude: int = Field(10_000, ge=1, description="most ids in a request's exclude list")
    max_body_bytes: int = Field(
        4 << 20, ge=1024, description="largest request body; larger ones get 413 before parsing"
    )
    request_timeout: float = Field(
        30.0, gt=0, description="seconds before a request is answered 504 (its work is dropped)"
    )
    read_api_key: SecretStr | None = Field(
        None, description="bearer key for the query routes and /metrics; unset, they are open"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='origins allowed by CORS, e.g. ["https://shop.example"]; empty: no CORS',
    )
    log_format: Literal["json", "text"] = Field("json", description="one JSON object per line")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="info logs one line per request"
    )
    query_cache_size: int = Field(
        4096, ge=0, description="query texts whose embeddings are kept in memory (0: none)"
    )
    compact_fraction: float = Field(
        0.1,
        gt=0,
        description="compact in the background once tombstones plus appended rows reach this "
        "fraction of the indexed rows",
    )
    compact_min_changes: int = Field(1000, ge=1, description="...and at least this many")
    auto_compact: bool = Field(True, description="compact in the background when due")

    def compaction_policy(self) -> CompactionPolicy | None:
        if not self.auto_compact:
            return None
        return CompactionPolicy(self.compact_fraction, self.compact_min_changes)

    def recommender_config(self) -> RecommenderConfig:
        if self.gpu:
            from engine.gpu import require_gpu

            require_gpu()
        return RecommenderConfig(
            backend=self.backend,
            allow_backend_mismatch=self.allow_backend_mismatch,
            device="cuda" if self.gpu else "cpu",
            max_k=self.max_k,
            max_history=self.max_history,
            max_text_chars=self.max_text_chars,
            max_filters=self.max_filters,
            max_exclude=self.max_exclude,
            options=QueryOptions(strategy=self.strategy),
        )
