"""Live item writes in the server, and background compaction.

Writes, compactions and hot reloads all publish ``app.state.recommender`` under the reloader's
one lock, so none of them can publish a snapshot built on one the other has replaced. A write
embeds, logs (fsync) and applies under that lock, then publishes the new snapshot; requests
already running finish on the one they took. Once tombstones and appended rows pass the policy's
threshold a compaction runs in a worker thread; only its last step (write the version, carry
over the batches logged meanwhile, switch ``CURRENT``, load it) holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import State

from api.reload import Reloader
from engine import Bundle, Recommender
from engine.changes import ItemFields
from engine.compaction import CompactionResult, compacted_content, finish
from engine.errors import VecrecError
from engine.writes import CompactionPolicy, Prepared, commit, pending_changes, prepare

log = logging.getLogger("vecrec.api")


@dataclass(frozen=True)
class WriteOutcome:
    prepared: Prepared
    bundle: Bundle


class Writer:
    """The server's one writer: live updates and compactions of the served index."""

    def __init__(self, reloader: Reloader, policy: CompactionPolicy | None) -> None:
        self.reloader = reloader
        self.policy = policy
        self.compactions = 0
        self.last_compaction_error: str | None = None
        self._compaction: asyncio.Task[CompactionResult | None] | None = None

    async def write(
        self,
        state: State,
        upserts: Sequence[ItemFields],
        deletes: Sequence[str],
        *,
        prefix: str = "upsert",
    ) -> WriteOutcome:
        """Validate, embed, log durably and serve ``upserts`` and ``deletes`` as one batch."""
        async with self.reloader.lock:
            # Changes are validated against, and applied to, what CURRENT and the log hold now.
            if self.reloader.pending(state) is not None:
                await self.reloader.reload_locked(state)
            served: Recommender = state.recommender
            prepared = await asyncio.to_thread(
                prepare, served.bundle, upserts, deletes, served.embedder, prefix=prefix
            )
            bundle = await asyncio.to_thread(commit, served.bundle, prepared.changes)
            state.recommender = served.with_bundle(bundle)
        self._compact_if_due(state)
        return WriteOutcome(prepared, bundle)

    @property
    def compacting(self) -> bool:
        return self._compaction is not None and not self._compaction.done()

    def _compact_if_due(self, state: State) -> None:
        if self.policy is None or self.compacting:
            return
        if self.policy.due(state.recommender.bundle):
            self._compaction = asyncio.create_task(self._background(state))

    async def _background(self, state: State) -> CompactionResult | None:
        try:
            return await self.compact(state)
        except VecrecError as exc:  # e.g. a build took the lock: the next write tries again
            self.last_compaction_error = str(exc)
            log.warning("background compaction skipped: %s", exc)
        except Exception as exc:
            self.last_compaction_error = str(exc)
            log.exception("background compaction failed")
        return None

    async def compact(self, state: State) -> CompactionResult | None:
        """Fold the served snapshot's updates into a new version and serve it (None when there
        is nothing to fold)."""
        snapshot: Bundle = state.recommender.bundle
        if pending_changes(snapshot) == 0:
            return None
        content = await asyncio.to_thread(compacted_content, snapshot)
        async with self.reloader.lock:
            result = await asyncio.to_thread(finish, snapshot, content)
            await self.reloader.reload_locked(state)
        self.compactions += 1
        self.last_compaction_error = None
        log.info(
            "compacted %s: %s → %s (%d changes folded, %d batches carried)",
            snapshot.manifest.name,
            snapshot.manifest.version,
            result.path.name,
            result.folded,
            result.carried,
        )
        return result

    async def close(self) -> None:
        """Let a running compaction finish: its worker thread cannot be interrupted anyway."""
        if self._compaction is not None:
            with contextlib.suppress(Exception):
                await self._compaction
