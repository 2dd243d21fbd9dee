"""Offline bulk retrieval: recommendations for millions of users into Parquet parts.

* :mod:`engine.bulk.users`: users from Parquet/CSV/JSONL, one row per user or long interactions;
* :mod:`engine.bulk.prefetch`: one batched search per chunk, answering each user's search;
* :mod:`engine.bulk.batch`: the online pipeline per user around that search;
* :mod:`engine.bulk.fast`: the common request for a whole chunk at once, from
  :mod:`engine.bulk.chunk_model` (every user's query) and :mod:`engine.bulk.scan` (one exact scan
  with each user's history masked out);
* :mod:`engine.bulk.parts`: numbered parts written atomically, and resumption;
* :mod:`engine.bulk.job`: the single-machine job; :mod:`engine.bulk.ray_job` the Ray one.
"""

from engine.bulk.batch import BatchRecommender, BulkRequest, ChunkStats
from engine.bulk.batches import UserBatch
from engine.bulk.job import DEFAULT_CHUNK, BulkReport, run_bulk
from engine.bulk.users import UsersSpec, iter_users

__all__ = [
    "DEFAULT_CHUNK",
    "BatchRecommender",
    "BulkReport",
    "BulkRequest",
    "ChunkStats",
    "UserBatch",
    "UsersSpec",
    "iter_users",
    "run_bulk",
]
