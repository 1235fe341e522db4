"""Kept for `from prescore.lookup import Scores`: the client lives in prescore.serving.client."""

from prescore.serving.client import Scores, SnapshotNotFoundError, freshness

__all__ = ["Scores", "SnapshotNotFoundError", "freshness"]
