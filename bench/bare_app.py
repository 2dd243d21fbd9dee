"""The baseline of bench/http_bench.py: a bare FastAPI service doing the same FAISS calls as vecrec.

``/recommend``: the weighted mean of the history items' stored vectors, ``index.search`` for
``k + len(history)``, seen items dropped. ``/search``: the text embedded by sentence-transformers
(one thread, as vecrec's server), ``index.search`` for ``k``. No validation beyond pydantic's,
no filters, no re-ranking, no metadata in the answer: what a hand-written service would do.

    BARE_INDEX=indexes/movielens uvicorn bench.bare_app:create_app --factory --port 8001
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel


class Event(BaseModel):
    item_id: str
    weight: float = 1.0
    timestamp: float | None = None


class RecommendBody(BaseModel):
    history: list[Event]
    k: int = 10


class SearchBody(BaseModel):
    text: str
    k: int = 10


def _version_dir(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    return path / (path / "CURRENT").read_text().strip()


def create_app() -> FastAPI:
    directory = _version_dir(Path(os.environ["BARE_INDEX"]))
    faiss.omp_set_num_threads(1)
    index = faiss.read_index(str(directory / "index.faiss"))
    vectors = np.load(directory / "vectors.npy", mmap_mode="r")
    ids = pd.read_parquet(directory / "items.parquet", columns=["id"])["id"].astype(str).tolist()
    row_of = {item: row for row, item in enumerate(ids)}
    spec = json.loads((directory / "manifest.json").read_text())["model"]["spec"]
    app = FastAPI()
    model: list[object] = []

    def embed(text: str) -> np.ndarray:
        if not model:
            import torch
            from sentence_transformers import SentenceTransformer

            from engine.embedder import resolve_model_dir

            torch.set_num_threads(1)
            model.append(SentenceTransformer(str(resolve_model_dir(spec)), device="cpu"))
        encoder = model[0]
        return encoder.encode([text], normalize_embeddings=True).astype(np.float32)  # type: ignore[attr-defined,no-any-return]

    @app.post("/recommend")
    def recommend(body: RecommendBody) -> dict[str, list[str]]:
        rows = [row_of[e.item_id] for e in body.history if e.item_id in row_of]
        weights = np.array([e.weight for e in body.history if e.item_id in row_of], np.float32)
        query = (weights[:, None] * vectors[rows]).sum(axis=0)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        _, found = index.search(query[None, :].astype(np.float32), body.k + len(rows))
        seen = set(rows)
        return {"items": [ids[r] for r in found[0] if r >= 0 and r not in seen][: body.k]}

    @app.post("/search")
    def search(body: SearchBody) -> dict[str, list[str]]:
        _, found = index.search(embed(body.text), body.k)
        return {"items": [ids[r] for r in found[0] if r >= 0]}

    @app.get("/health")
    def health() -> dict[str, str]:
        embed("warm up")
        return {"status": "ok"}

    return app
