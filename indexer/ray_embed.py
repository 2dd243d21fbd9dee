"""``vecrec index build --engine ray``: the catalogue embedded across Ray workers.

:class:`RayEmbedder` is an :class:`~engine.embedder.Embedder` whose ``embed`` splits the texts
into one contiguous shard per actor; each actor loads the model once and embeds its shard, and
the vectors come back in order. The build itself is unchanged (catalogue, embedding cache,
FAISS, bundle): it only gets this embedder instead of a local one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.bulk.ray_job import start_ray
from engine.embedder import load_embedder


class _EmbedActor:
    def __init__(self, spec: str, threads: int | None) -> None:
        self.embedder = load_embedder(spec, threads=threads)

    def describe(self) -> tuple[str, int, int | None]:
        e = self.embedder
        return e.spec, e.dimension, e.max_seq_length

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.embedder.embed(texts, batch_size=batch_size)


class RayEmbedder:
    """Embeds on ``workers`` Ray actors (a local cluster, or the one at ``address``)."""

    def __init__(
        self,
        spec: str,
        *,
        workers: int = 2,
        address: str | None = None,
        threads: int | None = None,
    ) -> None:
        ray = start_ray(address, workers)
        actor = ray.remote(num_cpus=1)(_EmbedActor)
        self._ray = ray
        self._actors = [actor.remote(spec, threads) for _ in range(workers)]
        self._spec, self._dimension, self._max_seq = ray.get(self._actors[0].describe.remote())

    @property
    def spec(self) -> str:
        return str(self._spec)

    @property
    def dimension(self) -> int:
        return int(self._dimension)

    @property
    def max_seq_length(self) -> int | None:
        return self._max_seq

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """``float32 (len(texts), d)`` unit rows, in the order of ``texts``."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        shards = np.array_split(np.arange(len(texts)), min(len(self._actors), len(texts)))
        futures: list[Any] = [
            actor.embed.remote([texts[i] for i in shard], batch_size)
            for actor, shard in zip(self._actors, shards, strict=False)
        ]
        return np.concatenate(self._ray.get(futures)).astype(np.float32, copy=False)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
