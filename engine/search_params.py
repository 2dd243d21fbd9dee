"""Search parameters a caller may set per Recommender or per request: names and bounds.

``efSearch`` (HNSW: candidate list length) and ``nprobe`` (IVF: inverted lists scanned) are the
only ones. A parameter that does not apply to the index's type (``nprobe`` on HNSW, anything on a
Flat index or on the exact scan of a selective filter) is ignored, not refused: a client cannot
know, and need not care, which index type a version was built with, and a hot reload may change
it (``--factory auto`` picks by catalogue size). Values are bounded so one request cannot buy an
unbounded amount of work; an ``nprobe`` above the index's ``nlist`` probes every list, as FAISS
itself does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidArgument

# efSearch 4096 already visits most of a million-item HNSW graph's useful neighbourhood;
# nprobe 65536 is the largest nlist vecrec builds (indexer/index_choice.py IVF_MAX_NLIST).
LIMITS: dict[str, int] = {"efSearch": 4096, "nprobe": 65_536}


def check_search_params(params: Mapping[str, Any] | None, *, field: str) -> dict[str, int]:
    """``params`` as a plain dict once every name is known and every value an int in bounds.

    Errors are :class:`InvalidArgument` naming ``field.<name>`` (or ``field`` for an unknown
    name, with the name in the message).
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidArgument(f"{field} must map efSearch/nprobe to integers", field=field)
    out: dict[str, int] = {}
    for name, value in params.items():
        if name not in LIMITS:
            raise InvalidArgument(
                f"{field} has unknown parameter {name!r} (choose from {', '.join(LIMITS)})",
                field=field,
            )
        limit = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise InvalidArgument(
                f"{field}.{name} must be an integer from 1 to {limit}; got {value!r}",
                field=f"{field}.{name}",
            )
        out[str(name)] = int(value)
    return out
