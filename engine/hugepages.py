"""Transparent huge pages for large in-memory index structures (Linux; elsewhere nothing).

A graph search reads one vector per visited node, scattered over the whole index: at a million
384-d vectors that is 1.5-1.8 GB, and on 4 KiB pages nearly every read misses the TLB and walks
the page tables. On 2 MiB pages the same search ran 1.22× faster (FAISS HNSW32,SQfp16 at 1M)
and 1.21× (hnswlib), bench/RESULTS.md, issue 7. Most kernels ship THP in ``madvise`` mode, so
memory gets huge pages only when asked: :func:`advise` asks for a range (``MADV_HUGEPAGE``) and
collapses what is already filled (``MADV_COLLAPSE``, Linux 6.1+; older kernels leave it to
khugepaged). :func:`huge_pages_for_new_mappings` does it for the anonymous mappings a block of
code creates, for libraries (hnswlib) that allocate their own memory and do not say where.
Every failure (no THP, ``never`` mode, another OS) leaves the memory as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

HUGE_PAGE = 2 << 20
# Below this a structure spans few huge pages and its TLB misses are cheap already.
MIN_BYTES = 64 << 20
MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25

log = logging.getLogger(__name__)


@cache
def _madvise() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    fn = ctypes.CDLL(name, use_errno=True).madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def advise(address: int, nbytes: int) -> int:
    """Ask for huge pages over the 2 MiB-aligned inside of ``[address, address + nbytes)``.

    Returns the bytes advised (0 when the range holds no whole huge page or the system says
    no)."""
    low = -(-address // HUGE_PAGE) * HUGE_PAGE
    high = (address + nbytes) // HUGE_PAGE * HUGE_PAGE
    madvise = _madvise()
    if madvise is None or high <= low:
        return 0
    if madvise(low, high - low, MADV_HUGEPAGE) != 0:
        log.debug("madvise(MADV_HUGEPAGE) refused: errno %d", ctypes.get_errno())
        return 0
    # Pages already filled are collapsed now; without it only later faults would be huge.
    if madvise(low, high - low, MADV_COLLAPSE) != 0:
        log.debug("madvise(MADV_COLLAPSE) refused: errno %d", ctypes.get_errno())
    return high - low


def anonymous_mappings() -> dict[int, int]:
    """``{start: end}`` of this process's private, writable, anonymous mappings (Linux)."""
    try:
        text = Path("/proc/self/maps").read_text(encoding="ascii")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        fields = line.split()
        # Anonymous mappings have no path (heap and stack are named: "[heap]", "[stack]").
        if len(fields) == 5 and fields[1].startswith("rw") and fields[1].endswith("p"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out[start] = end
    return out


@contextmanager
def huge_pages_for_new_mappings(min_bytes: int = MIN_BYTES) -> Iterator[list[int]]:
    """Advise huge pages for the anonymous mappings of at least ``min_bytes`` that the block
    creates (or grows). The yielded list receives the bytes advised, one entry per mapping."""
    before = anonymous_mappings()
    advised: list[int] = []
    yield advised
    for start, end in anonymous_mappings().items():
        if end - start >= min_bytes and before.get(start) != end:
            got = advise(start, end - start)
            if got:
                advised.append(got)
