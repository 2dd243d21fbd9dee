"""Hot reload: swap the served bundle for the version ``CURRENT`` now names, without a restart.

The new bundle is loaded, verified and warmed up beside the old one in a worker thread, then
published with one assignment to ``app.state.recommender``. Requests already running keep the
reference they took and finish on the old bundle; the old one is freed when the last lets go.
A bundle that fails to load is refused and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import State

from engine import Bundle, Recommender
from engine.bundle import resolve_bundle_dir
from engine.errors import BundleError, VecrecError
from engine.wal import log_path

log = logging.getLogger("vecrec.api")


@dataclass(frozen=True)
class ReloadOutcome:
    reloaded: bool
    previous: str
    version: str
    items: int


class Reloader:
    """Serialises reloads and remembers how they went, for ``/health``."""

    def __init__(self, index: Path, load: Callable[[], Recommender]) -> None:
        self.index = index
        self._load = load
        # Two reloads at once would load two bundles beside the served one and race to publish.
        self._lock = asyncio.Lock()
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None
        # The version directory that last failed: polling does not retry it until CURRENT moves.
        self.failed_dir: Path | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held by whoever publishes ``state.recommender``: reloads, live writes, compactions."""
        return self._lock

    def pending(self, state: State) -> Path | None:
        """The version directory to load when it is not what is served (None when it is): a
        new version, or the served one with updates another process logged."""
        target = resolve_bundle_dir(self.index)
        served: Bundle = state.recommender.bundle
        if target != served.path:
            return target
        try:
            logged = log_path(target.parent, served.manifest.version).stat().st_size
        except FileNotFoundError:
            logged = 0
        return None if logged == served.log.size else target

    async def reload(self, state: State, *, force: bool = False) -> ReloadOutcome:
        async with self._lock:
            return await self.reload_locked(state, force=force)

    async def reload_locked(self, state: State, *, force: bool = False) -> ReloadOutcome:
        """:meth:`reload` for a caller that already holds :attr:`lock`."""
        old: Recommender = state.recommender
        previous = old.bundle.manifest.version
        try:
            if not force and self.pending(state) is None:
                return ReloadOutcome(False, previous, previous, old.bundle.live_count)
            # A worker thread, not the event loop: verifying checksums and loading the model
            # take seconds on a large bundle, and requests must keep being answered meanwhile.
            new = await asyncio.to_thread(self._load)
        except Exception as exc:
            self._failed(exc)
            if isinstance(exc, VecrecError):
                raise
            raise BundleError(f"reload failed: {exc}") from exc
        state.recommender = new
        self.reloads += 1
        self.last_error = None
        self.failed_dir = None
        manifest = new.bundle.manifest
        log.info("reloaded %s: version %s → %s", manifest.name, previous, manifest.version)
        return ReloadOutcome(True, previous, manifest.version, new.bundle.live_count)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = str(exc)
        try:
            self.failed_dir = resolve_bundle_dir(self.index)
        except VecrecError:
            self.failed_dir = None
        log.error("reload refused, still serving the loaded bundle: %s", exc)

    async def poll(self, state: State, interval: float) -> None:
        """Reload whenever ``CURRENT`` names a new version; runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                target = self.pending(state)
                if target is not None and target != self.failed_dir:
                    await self.reload(state)
            except VecrecError:
                pass  # recorded by reload() and shown by /health; the old bundle keeps serving
            except Exception:  # a poller that dies silently would stop all future reloads
                log.exception("reload polling failed")
