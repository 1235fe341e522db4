"""A serving host following the object store: `prescore serve` with the state on a store.

A daemon thread looks at each use case's pointer every `serve.store_poll_seconds` and brings this
host's copy in line (snapshot.follow_store: download, check, swap); the lookup clients then pick
the new snapshot up as they do after a local publish. While the store is unreachable or a
download is bad, the host keeps serving the last good snapshot, and /readyz and /metrics say how
long ago each use case last synced and why it last failed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from prescore import storage
from prescore.serving import snapshot

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prescore.config import Settings, UseCase

log = logging.getLogger(__name__)


class StoreFollower:
    """Keeps this host's snapshots on the store's pointers, one look per interval."""

    def __init__(self, settings: Settings, usecases: Sequence[UseCase]) -> None:
        self.settings = settings
        self.usecases = list(usecases)
        self.interval = settings.serve.store_poll_seconds
        self.synced_at: dict[str, float] = {}  # monotonic time of each use case's last good look
        self.errors: dict[str, str] = {}  # why each use case's last look failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> None:
        """One look at every use case's pointer; a failure is remembered, never raised."""
        for usecase in self.usecases:
            try:
                moved = snapshot.follow_store(self.settings, usecase)
            except Exception as exc:  # the store down, a bad download: keep what is served
                why = storage.redacted(f"{type(exc).__name__}: {exc}")[:300]
                self.errors[usecase.name] = why
                log.warning("serve: %s: could not follow the store: %s", usecase.name, why)
                continue
            self.synced_at[usecase.name] = time.monotonic()
            self.errors.pop(usecase.name, None)
            if moved:
                log.info("serve: %s now serves %s from the store", usecase.name, moved)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync_once()

    def sync_age(self, usecase: str) -> float | None:
        """Seconds since the use case last synced with the store; None if it never has."""
        synced = self.synced_at.get(usecase)
        return None if synced is None else time.monotonic() - synced

    def state(self, usecase: str) -> dict[str, Any]:
        """What /readyz says of the store for one use case."""
        age = self.sync_age(usecase)
        state: dict[str, Any] = {"synced_seconds_ago": None if age is None else round(age, 1)}
        if usecase in self.errors:
            state["error"] = self.errors[usecase]
        return state
