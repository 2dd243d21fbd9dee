"""Server settings, read from the environment (prefix ``VECREC_``) at the API edge only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine import QueryOptions, RecommenderConfig


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

    def recommender_config(self) -> RecommenderConfig:
        return RecommenderConfig(
            max_k=self.max_k,
            max_history=self.max_history,
            max_text_chars=self.max_text_chars,
            options=QueryOptions(strategy=self.strategy),
        )
