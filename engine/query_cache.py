"""A small in-memory LRU of query-text embeddings, with hit counts and embedding times.

Services see the same interest and search texts again and again; one embedding costs 20-50 ms
on a CPU against microseconds for a lookup. Entries live in process memory only (never on disk)
and the cache is keyed by the exact text, so answers are identical with or without it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class QueryEmbeddingCache:
    """``text → float32 (d,)`` for the last ``size`` distinct texts (0 disables caching)."""

    def __init__(self, size: int = 4096, on_embed: Callable[[float], None] | None = None) -> None:
        self.size = size
        self.on_embed = on_embed  # seconds each actual embedding took (metrics)
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, embed: Callable[[str], np.ndarray]) -> np.ndarray:
        with self._lock:
            vector = self._entries.get(text)
            if vector is not None:
                self._entries.move_to_end(text)
                self.hits += 1
                return vector
            self.misses += 1
        start = time.perf_counter()
        vector = embed(text)
        if self.on_embed is not None:
            self.on_embed(time.perf_counter() - start)
        vector.setflags(write=False)  # shared between requests
        if self.size > 0:
            with self._lock:
                self._entries[text] = vector
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return vector
