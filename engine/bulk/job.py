"""A bulk job on one machine: read chunks of users, answer each, write each as a part.

Memory holds one chunk being read, :data:`ANSWERING` being answered and one being written:
background threads read the next chunk, answer two at once and write the last answered one as
a part, in order (Arrow's decoding, Parquet's encoding, BLAS, SciPy's sparse product and FAISS
release the GIL).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import pyarrow as pa
from threadpoolctl import threadpool_limits

from engine.bulk.batch import BatchRecommender, BulkRequest, ChunkStats
from engine.bulk.batches import UserBatch
from engine.bulk.parts import PartStore
from engine.bulk.users import UsersSpec, iter_users
from engine.errors import InvalidArgument
from engine.recommender import Recommender

DEFAULT_CHUNK = 1024
# Chunks answered at once: one chunk's single-threaded steps (user model, output table) fill the
# cores while the other's scan waits for its turn on them.
ANSWERING = 2


@dataclass
class BulkReport:
    """What a run did; ``users`` and ``seconds`` count this run's work only (not resumed parts)."""

    out: Path
    parts_written: int = 0
    parts_skipped: int = 0
    seconds: float = 0.0
    stats: ChunkStats = field(default_factory=ChunkStats)

    @property
    def users_per_second(self) -> float:
        return self.stats.users / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "parts_written": self.parts_written,
            "parts_skipped": self.parts_skipped,
            "users": self.stats.users,
            "rows": self.stats.rows,
            "popularity_fallback_users": self.stats.popular,
            "single_user_searches": self.stats.fallbacks,
            "vectorised_users": self.stats.vectorised,
            "unknown_history_ids": self.stats.unknown,
            "seconds": round(self.seconds, 3),
            "users_per_second": round(self.users_per_second, 1),
        }


def job_description(
    recommender: Recommender, users: UsersSpec, request: BulkRequest, chunk_size: int
) -> dict[str, Any]:
    """What the parts of a job answer: a resumed run must match it exactly."""
    bundle = recommender.bundle
    return {
        "index": str(bundle.path),
        "version": bundle.manifest.version,
        "items": len(bundle),
        "live_items": len(bundle.row_of),
        "users": users.fingerprint(),
        "request": request.describe(),
        "chunk_size": chunk_size,
    }


def run_bulk(
    recommender: Recommender,
    users: UsersSpec,
    out: Path,
    request: BulkRequest,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    resume: bool = False,
    progress: Callable[[BulkReport], None] | None = None,
) -> BulkReport:
    """Answer every user of ``users`` into Parquet parts under ``out``."""
    if chunk_size < 1:
        raise InvalidArgument("chunk size must be >= 1", field="chunk_size")
    batcher = BatchRecommender(recommender, request)
    store = PartStore(out, job_description(recommender, users, request, chunk_size), resume=resume)
    report = BulkReport(Path(out))
    start = time.perf_counter()
    writing: Future[Path] | None = None
    answering: deque[tuple[int, Future[tuple[pa.Table, ChunkStats]]]] = deque()

    def finish_oldest() -> None:
        nonlocal writing
        index, answer = answering.popleft()
        table, stats = answer.result()
        stats.rows = table.num_rows
        if writing is not None:
            writing.result()  # at most one part waits to be written
        writing = writer.submit(store.write, index, table)
        report.parts_written += 1
        report.stats.add(stats)
        report.seconds = time.perf_counter() - start
        if progress is not None:
            progress(report)

    with (
        ThreadPoolExecutor(1, thread_name_prefix="vecrec-bulk-writer") as writer,
        one_thread_per_chunk(),
        ThreadPoolExecutor(
            ANSWERING, thread_name_prefix="vecrec-bulk-answer", initializer=_answering_thread
        ) as answerer,
    ):
        for index, batch in enumerate(read_ahead(iter_users(users, chunk_size))):
            if store.done(index):
                report.parts_skipped += 1
                continue
            answering.append((index, answerer.submit(batcher.recommend, batch)))
            if len(answering) == ANSWERING:
                finish_oldest()
        while answering:
            finish_oldest()
        if writing is not None:
            writing.result()
    report.seconds = time.perf_counter() - start
    store.finish(report.summary())
    return report


@contextmanager
def one_thread_per_chunk() -> Iterator[None]:
    """While the job runs, each chunk's kernels stay on the thread answering it.

    The job's parallelism is its :data:`ANSWERING` threads. Kernels that spread over every core
    themselves (BLAS, FAISS's OpenMP) each added a thread team per chunk that spin-waits after its
    call and takes the cores the other chunk and the writer need (measured on 2 vCPU: a chunk's
    user model took 24 core-ms in the job against 12 alone). BLAS's thread count is process-wide,
    so it is restored when the job ends; FAISS's is per thread (:func:`_answering_thread`).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _answering_thread() -> None:
    faiss.omp_set_num_threads(1)  # OpenMP's setting is the calling thread's own


def read_ahead(batches: Iterable[UserBatch]) -> Iterator[UserBatch]:
    """``batches`` in order, the next one read in a background thread while this one is used."""
    source = iter(batches)
    with ThreadPoolExecutor(1, thread_name_prefix="vecrec-bulk-reader") as reader:
        upcoming = reader.submit(next, source, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, source, None)
            yield batch
