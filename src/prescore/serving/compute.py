"""Scores computed on demand: the @champion's model package, in-process, on rows of features.

Precompute misses some keys (a customer who signed up this morning); for those a caller sends the
feature values and gets the score the batch would have given, from the same package (its fitted
fills, clips and levels: training.package). The package is loaded once per version; the alias is
looked up again at most every `refresh` seconds, so a promotion or a rollback swaps the model
without a restart.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Mapping, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from prescore.platform import registry

if TYPE_CHECKING:
    from prescore.config import Settings, UseCase
    from prescore.training.package import Package, Preprocessing


class ComputeRefusedError(ValueError):
    """A compute request that cannot be scored: a time series, a PII or unknown column, a
    missing feature or a value that is not its feature's kind; the message names it."""


class ChampionPackage:
    """The use case's @champion package, loaded once per version; safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        usecase: UseCase,
        refresh: float = 10.0,
        on_load: Callable[[], None] | None = None,
    ) -> None:
        """`on_load`: called after each version is loaded (a server settles its heap)."""
        self.settings, self.usecase, self.refresh = settings, usecase, refresh
        self.on_load = on_load
        self._loaded: tuple[registry.ModelRef, Package] | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()

    def current(self) -> tuple[registry.ModelRef, Package]:
        """The champion's version and package (ModelNotFoundError when there is none)."""
        loaded = self._loaded
        if loaded is not None and monotonic() < self._next_check:
            return loaded
        with self._lock:
            ref = registry.resolve_alias(self.settings, self.usecase, registry.CHAMPION)
            if self._loaded is None or self._loaded[0] != ref:
                # One thread: a request scores a few rows, where an OpenMP team costs more than
                # it saves and contends with the server's own threads (bench/: p99).
                self._loaded = (ref, registry.load_package(ref).pinned(1))
                if self.on_load is not None:
                    self.on_load()
            self._next_check = monotonic() + self.refresh
            return self._loaded


def settle_heap() -> None:
    """A server's heap, collected once and frozen: what it holds at its start and what loading a
    model imports (MLflow's stores, SQLAlchemy) live as long as it does, and the collector walking
    them at every full collection was the lookups' tail (bench/). Unfrozen first, so what died
    since the last call is collected. At the start and once per model version."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def preload() -> None:
    """Import what loading a model package takes (MLflow's loader, XGBoost) now: at a server's
    start rather than in its first computed request."""
    import mlflow.pyfunc  # noqa: F401
    import xgboost  # noqa: F401


def refuse_time_series(usecase: UseCase) -> None:
    """A forecast is built from each series' history: nothing to compute from one row."""
    if usecase.time_series is not None:
        raise ComputeRefusedError(
            f"use case {usecase.name!r} forecasts from each series' history: its scores are "
            "precomputed only"
        )


def check_rows(
    usecase: UseCase, rows: Sequence[Mapping[str, Any]], preprocessing: Preprocessing
) -> None:
    """Refuse what cannot be computed, naming the column and the row: every input the package
    needs present (None for a missing value; a derived feature as itself or as the columns it is
    derived from), no PII, nothing but those and the key columns."""
    refuse_time_series(usecase)
    allowed = {*preprocessing.features, *preprocessing.inputs, *usecase.keys}
    pii = set(usecase.pii)
    checked: set[frozenset[str]] = set()  # the rows of a batch mostly name the same columns
    for number, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ComputeRefusedError(f"row {number}: an object of feature values, not {row!r}")
        names = frozenset(row)
        if names in checked:
            continue
        checked.add(names)
        refused = sorted(names & pii)
        if refused:
            raise ComputeRefusedError(
                f"row {number}: columns {refused} are PII of use case {usecase.name!r}, never "
                "model input: leave them out"
            )
        unknown = sorted(names - allowed)
        if unknown:
            raise ComputeRefusedError(
                f"row {number}: columns {unknown} are not inputs of use case "
                f"{usecase.name!r} ({', '.join(preprocessing.inputs)})"
            )
        missing = preprocessing.absent(names)
        if missing:
            raise ComputeRefusedError(
                f"row {number}: features {missing} are missing (give null for a missing value)"
            )


def computed(
    package: Package, usecase: UseCase, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[float], list[list[dict[str, Any]]] | None]:
    """One score per row of features, through the package (rows checked by `check_rows`), and
    each score's reasons when the use case explains its scores (as the score stage stores them)."""
    from prescore.training.package import FeatureValueError

    check_rows(usecase, rows, package.preprocessing)
    # A batch gives each derived feature the same way in every row: as itself or its sources.
    given = {c for row in rows for c in row} - set(usecase.keys)
    columns = {c: [row.get(c) for row in rows] for c in given}
    try:
        matrix = package.preprocessing.matrix(columns)
    except FeatureValueError as exc:
        raise ComputeRefusedError(str(exc)) from None
    scores = package.predict_matrix(matrix).tolist()
    explain = usecase.score.explain
    if explain is None:
        return scores, None
    reasons = package.explain(matrix, top_k=explain.top_k, approximate=explain.approximate)
    return scores, reasons.to_pylist()
