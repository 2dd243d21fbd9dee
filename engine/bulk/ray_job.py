"""The bulk job on Ray: the same chunks, the same per-chunk pipeline, across an actor pool.

The driver reads the users file once, in chunks exactly as the local job does (so part ``i``
holds the same users either way), and spills each unfinished chunk to ``OUT/.chunks/`` as a
small Parquet file. A Ray Data pipeline over those chunk files then runs
``map_batches`` with an actor pool: each actor loads and verifies the bundle once, answers a
chunk with :class:`~engine.bulk.batch.BatchRecommender` and writes its part through
:class:`~engine.bulk.parts.PartStore` (temporary name, then rename). ``OUT`` must be on storage
every Ray worker sees (a local directory on a one-machine cluster; a shared mount otherwise).

Ray is optional (``pip install 'vecrec[ray]'``) and imported only here, only when used.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.bulk.batch import BatchRecommender, BulkRequest, ChunkStats, stat_fields
from engine.bulk.batches import UserBatch
from engine.bulk.job import DEFAULT_CHUNK, BulkReport, job_description
from engine.bulk.parts import PartStore
from engine.bulk.users import UsersSpec, iter_users
from engine.errors import InvalidArgument
from engine.recommender import Recommender

CHUNKS_DIR = ".chunks"
STAT_FIELDS = stat_fields()


def import_ray() -> Any:
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise InvalidArgument(
            "--engine ray needs Ray: pip install 'vecrec[ray]'", field="engine"
        ) from exc
    return ray


def start_ray(address: str | None, workers: int) -> Any:
    """Connect to ``address``, or start a local cluster of ``workers`` CPUs; returns ``ray``."""
    ray = import_ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "ERROR",
        }
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, **options)
    # Our own progress reporting only: no Ray Data bars or per-operator status lines.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def search_threads() -> int:
    """The FAISS threads of this process (the cores, unless set otherwise)."""
    import faiss

    return int(faiss.omp_get_max_threads())


def chunk_table(batch: UserBatch) -> pa.Table:
    """A chunk as one-row-per-user Parquet (the wide layout :func:`iter_users` reads back)."""
    events = pa.StructArray.from_arrays(
        [batch.items, pa.array(batch.weights), pa.array(batch.timestamps)],
        names=["item_id", "weight", "timestamp"],
    )
    history = pa.ListArray.from_arrays(pa.array(batch.offsets, type=pa.int32()), events)
    return pa.table({"user_id": pa.array(batch.user_ids, type=pa.string()), "history": history})


class ChunkWorker:
    """A Ray actor: one bundle, loaded once; each call answers whole chunks into parts."""

    def __init__(self, index: str, request: BulkRequest, out: str, threads: int) -> None:
        import faiss

        from engine.bundle import Bundle

        faiss.omp_set_num_threads(threads)
        self.batcher = BatchRecommender(Recommender(Bundle.load(index, mmap=False)), request)
        self.out = Path(out)

    def __call__(self, chunks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats: dict[str, list[int]] = {name: [] for name in ("part", *STAT_FIELDS)}
        for part, path in zip(chunks["part"], chunks["path"], strict=True):
            batch = next(iter_users(UsersSpec(Path(str(path))), 1 << 62))
            table, chunk = self.batcher.recommend(batch)
            chunk.rows = table.num_rows
            PartStore.write_part(self.out, int(part), table)
            stats["part"].append(int(part))
            for name in STAT_FIELDS:
                stats[name].append(int(getattr(chunk, name)))
        return {name: np.asarray(values, dtype=np.int64) for name, values in stats.items()}


def run_bulk_ray(
    index: Path,
    users: UsersSpec,
    out: Path,
    request: BulkRequest,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    resume: bool = False,
    address: str | None = None,
    workers: int | None = None,
    cross_encoder: str | None = None,
    threads: int | None = None,
    progress: Callable[[BulkReport], None] | None = None,
) -> BulkReport:
    """:func:`engine.bulk.run_bulk` on Ray: same parts, same answers.

    ``threads``: FAISS/BLAS threads of each actor (default: what this process's FAISS uses,
    i.e. what the local engine would use on this machine).
    """
    if cross_encoder:
        raise InvalidArgument("--cross-encoder is not available with --engine ray", field="engine")
    ray = import_ray()
    workers = workers or 2
    threads = threads or search_threads()
    # Loaded here too: the bundle is verified and the request validated before any actor starts.
    recommender = Recommender.open(index)
    BatchRecommender(recommender, request)
    store = PartStore(out, job_description(recommender, users, request, chunk_size), resume=resume)
    del recommender
    report = BulkReport(Path(out))
    start = time.perf_counter()
    spill = Path(out) / CHUNKS_DIR
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir()
    pending: list[dict[str, Any]] = []
    for part, batch in enumerate(iter_users(users, chunk_size)):
        if store.done(part):
            report.parts_skipped += 1
            continue
        path = spill / f"chunk-{part:06d}.parquet"
        pq.write_table(chunk_table(batch), path)
        pending.append({"part": part, "path": str(path)})
    if pending:
        start_ray(address, workers)
        dataset = ray.data.from_items(pending, override_num_blocks=len(pending)).map_batches(
            ChunkWorker,
            fn_constructor_kwargs={
                "index": str(Path(index).resolve()),
                "request": request,
                "out": str(Path(out).resolve()),
                "threads": threads,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            # BLAS and FAISS round differently with different thread counts (their work splits
            # differ), which can reorder exactly tied items: the actors search with the threads
            # the local engine would use, so both write the same parts.
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads),
                                      "OPENBLAS_NUM_THREADS": str(threads)}},
        )  # fmt: skip
        for row in dataset.iter_rows():
            report.parts_written += 1
            report.stats.add(ChunkStats(**{name: int(row[name]) for name in STAT_FIELDS}))
            report.seconds = time.perf_counter() - start
            if progress is not None:
                progress(report)
    shutil.rmtree(spill, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    store.finish(report.summary())
    return report
