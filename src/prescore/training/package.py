"""The model package: a booster and everything between a clean row and the booster's input.

`Preprocessing` holds what a model version was fitted with: for each feature, in the booster's
column order, its fill value, its clip bounds and (categorical) its levels. `matrix` turns feature
columns (Arrow arrays, as Spark's Arrow batches carry them, or a pandas frame's columns) into the
booster's float32 matrix. It is the one implementation of those transforms: training applies it
in Spark (`preprocessed`, through mapInArrow), the score stage inside its Arrow UDF, the MLflow
pyfunc (training.pyfunc) and computed scores on pandas rows. So a score is the same number
wherever it is computed, and scoring on a later day uses the values the model was trained with.

Missing means null or NaN, for every kind. Per feature, in order: missing -> the fill value (if
any); each clip range in turn (a fixed `cleaning.clip`, then fitted outlier bounds); a
categorical becomes its level's index, an unknown or missing level NaN (XGBoost's missing).

A derived feature (`derive:`) arrives computed from the clean table in Spark. Given only the
source columns it reads (a pyfunc or compute request holds raw rows), the package computes it
itself: its Spark SQL, translated once by sqlglot to DuckDB's dialect when the model is fitted,
runs in DuckDB over the rows (`Preprocessing.with_derived`); a test holds the two engines equal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from prescore.config import LearnedLevels, UseCase

FORMAT = 1  # the JSON layout of `Preprocessing`, stored with every model version


class FeatureValueError(ValueError):
    """A feature column holds values that cannot be its kind (text in a numeric feature)."""


@dataclass(frozen=True)
class FeatureStep:
    """How one feature column becomes one booster column."""

    name: str
    kind: str  # "numeric" or "categorical"
    integral: bool = False  # an int or long column: a fitted fill value is rounded
    fill: float | str | None = None
    clips: list[tuple[float | None, float | None]] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)  # categorical: code = index in this list


# A derived column's declared type (config.ColumnType) as DuckDB names it.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class DerivedStep:
    """A derived feature: its use case's Spark SQL, the same in DuckDB's dialect, and the source
    columns it reads."""

    name: str
    sql: str  # as declared (Spark SQL): what clean computed
    duckdb_sql: str  # what the package runs on raw rows, cast to the declared type
    reads: list[str]


def derived_step(name: str, sql: str, kind: str, reads: list[str]) -> DerivedStep:
    """Translate a derived column's Spark SQL to DuckDB, cast to its declared type."""
    import sqlglot

    translated = sqlglot.transpile(sql, read="spark", write="duckdb")[0]
    duckdb_sql = f"CAST(({translated}) AS {DUCKDB_TYPES[kind]})"
    return DerivedStep(name=name, sql=sql, duckdb_sql=duckdb_sql, reads=sorted(reads))


@dataclass(frozen=True)
class Preprocessing:
    """The fitted steps of every feature, in the booster's column order, and how the derived
    features are computed from source columns."""

    steps: list[FeatureStep]
    derived: list[DerivedStep] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [step.name for step in self.steps]

    @property
    def inputs(self) -> list[str]:
        """The raw columns a row needs: every feature not derived, then what the derived read."""
        derived = {d.name for d in self.derived}
        plain = [f for f in self.features if f not in derived]
        return list(dict.fromkeys([*plain, *(c for d in self.derived for c in d.reads)]))

    def absent(self, names: Collection[str]) -> list[str]:
        """The columns missing from `names` to score: a derived feature may come computed (as
        clean holds it) or as the source columns it reads."""
        derived = {d.name: d for d in self.derived}
        wanted = [
            c
            for f in self.features
            if f not in names
            for c in (derived[f].reads if f in derived else [f])
        ]
        return [c for c in dict.fromkeys(wanted) if c not in names]

    def with_derived(self, columns: Mapping[str, Any]) -> Mapping[str, Any]:
        """`columns` plus each derived feature they lack, computed by DuckDB from its sources."""
        import duckdb
        import pyarrow as pa

        todo = [d for d in self.derived if d.name not in columns]
        if not todo:
            return columns
        reads = list(dict.fromkeys(c for d in todo for c in d.reads))
        rows = pa.table({c: _arrow(columns[c]) for c in reads})
        select = ", ".join(f'{d.duckdb_sql} AS "{d.name}"' for d in todo)
        with duckdb.connect() as con:
            con.register("source_rows", rows)
            computed = con.execute(f"SELECT {select} FROM source_rows").to_arrow_table()
        return {**columns, **{d.name: computed.column(d.name) for d in todo}}

    @property
    def levels(self) -> dict[str, list[str]]:
        return {s.name: s.levels for s in self.steps if s.kind == "categorical"}

    def matrix(self, columns: Mapping[str, Any]) -> np.ndarray:
        """The booster's input: one float32 column per feature, from Arrow arrays or anything
        `pyarrow.array` takes (a pandas Series, a list), looked up by feature name."""
        columns = self.with_derived(columns)
        rows = len(columns[self.features[0]]) if self.steps else 0
        out = np.empty((rows, len(self.steps)), dtype=np.float32)
        for index, step in enumerate(self.steps):
            out[:, index] = transformed(step, columns[step.name])
        return out

    def frame_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """`matrix` of a pandas frame's feature columns (or the source columns of a derived one);
        a missing column is a KeyError naming it."""
        absent = self.absent(set(frame.columns))
        if absent:
            raise KeyError(f"feature columns {absent} are missing")
        return self.matrix({c: frame[c] for c in frame.columns})

    def to_json(self) -> str:
        steps, derived = [asdict(s) for s in self.steps], [asdict(d) for d in self.derived]
        return json.dumps({"format": FORMAT, "steps": steps, "derived": derived}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        found = json.loads(text)
        if found.get("format") != FORMAT:
            raise ValueError(f"preprocessing format {found.get('format')!r} is not {FORMAT}")
        steps = [
            FeatureStep(**{**s, "clips": [tuple(c) for c in s["clips"]]}) for s in found["steps"]
        ]
        return cls(steps=steps, derived=[DerivedStep(**d) for d in found.get("derived", [])])


def _arrow(values: Any) -> pa.Array:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, from_pandas=True)


def transformed(step: FeatureStep, values: Any) -> np.ndarray:
    """One feature column as float64, missing as NaN, after the step's fill, clips and coding."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = _arrow(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FeatureValueError(f"feature {step.name!r}: values of mixed kinds ({exc})") from exc
    if step.kind == "categorical":
        text = pc.cast(array, pa.string()) if array.type != pa.string() else array
        if step.fill is not None:
            text = pc.fill_null(text, str(step.fill))
        codes = pc.index_in(text, value_set=pa.array(step.levels, pa.string()))
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)
    try:
        numbers = pc.cast(array, pa.float64()) if array.type != pa.float64() else array
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FeatureValueError(
            f"feature {step.name!r}: values of type {array.type} are not numbers"
        ) from exc
    x = np.array(numbers.to_numpy(zero_copy_only=False), dtype=np.float64)
    if step.fill is not None:
        fill = round(float(step.fill)) if step.integral else float(step.fill)
        x[np.isnan(x)] = fill
    for low, high in step.clips:
        x = np.clip(x, -np.inf if low is None else low, np.inf if high is None else high)
    return x


# ---------------------------------------------------------------- the booster and its steps


@dataclass
class Package:
    """A booster and its preprocessing: a model version, ready to score raw feature rows."""

    preprocessing: Preprocessing
    booster: Any  # xgboost.Booster
    threads: int = 0  # 0: XGBoost's default, every core

    @property
    def features(self) -> list[str]:
        return self.preprocessing.features

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(matrix), dtype=np.float64)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores of raw feature rows: probabilities for binary, values for regression."""
        return self.predict_matrix(self.preprocessing.frame_matrix(frame))

    def predict_columns(self, columns: Mapping[str, Any]) -> np.ndarray:
        return self.predict_matrix(self.preprocessing.matrix(columns))

    def explain(self, matrix: np.ndarray, *, top_k: int, approximate: bool) -> pa.ListArray:
        """The reasons behind each row's score: its `top_k` (feature, contribution, value as the
        model saw it) by |contribution|, largest first, as an Arrow list per row (REASON_TYPE).

        Contributions are XGBoost's, in margin units (log-odds for a binary label): with the
        bias, all of a row's add up to its margin. Vectorised: the values are formatted in Arrow,
        not per row in Python, so the score UDF can afford it on every key.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import xgboost

        inputs = xgboost.DMatrix(
            matrix,
            missing=np.nan,
            # As many threads as the booster: a team of every core, built right after a pinned
            # booster's one-thread regions, waits for OpenMP to gather its threads each time.
            nthread=self.threads or None,
            feature_names=self.booster.feature_names,  # set when trained on a named frame
            feature_types=self.booster.feature_types,
        )
        contributions = self.booster.predict(
            inputs,
            pred_contribs=True,
            approx_contribs=approximate,
        )[:, :-1]  # the last column is the bias, no feature's
        top = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :top_k]
        rows, k = top.shape
        which = top.ravel()
        seen = np.take_along_axis(matrix, top, axis=1).ravel()
        steps = self.preprocessing.steps
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32)),
            pa.StructArray.from_arrays(
                [
                    pc.take(pa.array(self.features, pa.string()), pa.array(which)),
                    pa.array(np.take_along_axis(contributions, top, axis=1).ravel(), pa.float64()),
                    _values_as_text(steps, which, seen),
                ],
                fields=list(reasons_type().value_type),
            ),
        )

    def to_parts(self) -> tuple[bytes, str]:
        """The booster in XGBoost's native (ubj) form and the preprocessing as JSON."""
        return bytes(self.booster.save_raw("ubj")), self.preprocessing.to_json()

    @classmethod
    def from_parts(cls, booster: bytes, preprocessing: str, *, threads: int = 0) -> Package:
        """`threads` > 0 pins the booster's threads (one Spark task per core already)."""
        import xgboost

        loaded = xgboost.Booster()
        loaded.load_model(bytearray(booster))
        package = cls(Preprocessing.from_json(preprocessing), loaded)
        return package.pinned(threads) if threads else package

    def pinned(self, threads: int) -> Package:
        """Pin this package's booster to `threads` threads, in place (XGBoost's default: every
        core), before it is shared; returns the package."""
        self.booster.set_param({"nthread": threads})
        self.threads = threads
        return self


def reasons_type() -> pa.ListType:
    """A row's reasons in Arrow; REASONS_DDL in Spark."""
    import pyarrow as pa

    return pa.list_(
        pa.struct(
            [
                pa.field("feature", pa.string(), nullable=False),
                pa.field("contribution", pa.float64(), nullable=False),
                pa.field("value", pa.string()),  # null: the value was missing
            ]
        )
    )


REASONS_DDL = "array<struct<feature: string, contribution: double, value: string>>"


def _values_as_text(steps: list[FeatureStep], which: np.ndarray, seen: np.ndarray) -> pa.Array:
    """Each booster input as text: a categorical's level, a number as Arrow writes a float32,
    missing as null. `which` names the feature of each value in `seen`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = np.isnan(seen)
    text = pc.cast(pa.array(seen, pa.float32(), mask=missing), pa.string())
    levels = [level for step in steps for level in step.levels]
    if not levels:
        return text
    first = np.cumsum([0] + [len(step.levels) for step in steps])[:-1]
    categorical = np.array([step.kind == "categorical" for step in steps])[which] & ~missing
    code = np.where(categorical, first[which] + np.nan_to_num(seen).astype(np.int64), 0)
    level = pc.take(pa.array(levels, pa.string()), pa.array(code))
    return pc.if_else(pa.array(categorical), level, text)


# ---------------------------------------------------------------- fitted in Spark


def fit_preprocessing(train: DataFrame, *, usecase: UseCase) -> Preprocessing:
    """The steps of every feature, fitted on `train` (the training split's rows, as clean holds
    them): fill values and outlier bounds (data.cleaning's fits, one aggregation) and learned
    levels; constants, fixed clips and declared levels as the use case gives them."""
    from prescore.data.cleaning import fit_aggregates

    stats = train.agg(*fit_aggregates(usecase.cleaning)).first()
    assert stats is not None  # a global aggregate always returns one row
    return preprocessing_from(
        usecase, stats.asDict(), lambda name, how: learned_levels(train, name, how)
    )


def preprocessing_from(
    usecase: UseCase,
    stats: Mapping[str, Any],
    learn_levels: Callable[[str, LearnedLevels], list[str]],
) -> Preprocessing:
    """The steps from the training rows' statistics (named as data.cleaning.fit_aggregates names
    them) and a way to learn a column's `levels: auto`."""
    from prescore.config import LearnedLevels
    from prescore.data.cleaning import fitted_from

    cleaning = usecase.cleaning
    fitted = fitted_from(stats, cleaning)
    types = usecase.column_types
    steps = []
    for name in usecase.features:
        clips = [(r.min, r.max) for r in [cleaning.clip.get(name)] if r is not None]
        if name in fitted.bounds and cleaning.outliers[name].action == "clip":
            clips.append((fitted.bounds[name].min, fitted.bounds[name].max))
        declared = usecase.categorical_features.get(name)
        levels = (
            learn_levels(name, declared)
            if isinstance(declared, LearnedLevels)
            else list(declared or [])
        )
        steps.append(
            FeatureStep(
                name=name,
                kind="numeric" if declared is None else "categorical",
                integral=types.get(name) in ("int", "long"),
                fill=fitted.fill.get(name),
                clips=clips,
                levels=levels,
            )
        )
    derived = [
        derived_step(name, d.sql, d.type, sorted(d.columns))
        for name, d in usecase.derive.items()
        if name in usecase.features
    ]
    return Preprocessing(steps=steps, derived=derived)


def learned_levels(train: DataFrame, column: str, how: LearnedLevels) -> list[str]:
    """The `max_levels` most frequent values of `column` seen `min_count` times or more, most
    frequent first (ties by value, so a refit on the same rows learns the same codes)."""
    from pyspark.sql import functions as F

    counted = (
        train.where(F.col(column).isNotNull())
        .groupBy(column)
        .count()
        .where(F.col("count") >= how.min_count)
        .orderBy(F.col("count").desc(), F.col(column))
        .limit(how.max_levels)
    )
    return [str(row[0]) for row in counted.collect()]


# ---------------------------------------------------------------- applied in Spark


def preprocessed(df: DataFrame, preprocessing: Preprocessing) -> DataFrame:
    """`df` with each feature column replaced by its float booster column (the other columns as
    they are): `Preprocessing.matrix` on each Arrow batch. One row out per row in."""
    import pyarrow as pa
    from pyspark.sql.types import FloatType, StructField, StructType

    features = set(preprocessing.features)
    schema = StructType(
        [
            StructField(f.name, FloatType(), True) if f.name in features else f
            for f in df.schema.fields
        ]
    )

    def transform(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix = preprocessing.matrix(
                {name: batch.column(name) for name in preprocessing.features}
            )
            position = {name: i for i, name in enumerate(preprocessing.features)}
            arrays = [
                pa.array(matrix[:, position[name]], pa.float32())
                if name in position
                else batch.column(name)
                for name in batch.schema.names
            ]
            yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    return df.mapInArrow(transform, schema)
