"""Typed configuration: conf/base.yaml, an optional environment overlay, and one file per use case.

Every path, table name and threshold lives in these files. Loading is strict: an unknown key, a
wrong type or a missing `${VAR}` fails at load with the file, the field and the reason.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prescore import catalog
from prescore.catalog import INGESTED_AT, RUN_DATE, SOURCE_FILE, TARGET_DATE
from prescore.expressions import ExpressionError, referenced_columns
from prescore.identifiers import USECASE_NAME, check_identifier, check_usecase_name
from prescore.storage import StatePath, is_object_store, state_location

# The folder holding conf/, expectations/, sql/ and jobs/: $PRESCORE_HOME, else the checkout this
# package is installed from (src/prescore/ -> ../..). Stage jobs launched with the package as
# --py-files import it from a zip, so whoever launches them sets PRESCORE_HOME (the DAGs do).
HOME_VARIABLE = "PRESCORE_HOME"
PROJECT_ROOT = Path(os.environ.get(HOME_VARIABLE) or Path(__file__).resolve().parents[2])
DEFAULT_CONF_DIR = PROJECT_ROOT / "conf"
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file is missing, malformed or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- base.yaml


class SparkSettings(_Strict):
    master: str = "local[*]"
    app_name: str = "prescore"
    shuffle_partitions: int = Field(8, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)
    # Load hadoop-aws (s3a://) even when the state is local: a source on S3, a shared test session.
    object_store: bool = False


class MlflowSettings(_Strict):
    # Default: SQLite under a local state folder. State on an object store needs a database here.
    tracking_uri: str | None = None
    registry_prefix: str = "prescore"


class AirflowSettings(_Strict):
    """How the DAGs retry a failed task and where they report a final failure."""

    retries: int = Field(2, ge=0)
    retry_delay_seconds: int = Field(60, ge=0)
    max_retry_delay_seconds: int = Field(1800, ge=0)
    alert_webhook_url: str | None = None  # POSTed a JSON summary of each failed task; empty: off
    alert_timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return url


class ServeAuth(_Strict):
    """Bearer tokens for `prescore serve`, read from the environment only (comma-separated)."""

    tokens_env: str = Field("PRESCORE_API_TOKENS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class ServeSettings(_Strict):
    """`prescore serve`: where the HTTP app listens, how much one request may ask for, and who."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1)  # a larger request body is refused with 413
    auth: ServeAuth | None = None  # None: no authentication (then loopback only, or --insecure)
    usecases: list[str] | None = None  # the use cases answered; None: every file in conf/usecases/
    # Computed scores: seconds between looks at @champion (a promotion swaps the model after it).
    model_refresh_seconds: float = Field(10.0, ge=0)
    # State on an object store: seconds between looks at each use case's pointer there.
    store_poll_seconds: float = Field(10.0, gt=0)


class Settings(_Strict):
    """Where everything lands. Relative paths are taken from the project root; the state folder
    may also be an object-store prefix (prescore.storage)."""

    state_dir: StatePath = Path(".state")
    conf_dir: Path = DEFAULT_CONF_DIR
    expectations_dir: Path = PROJECT_ROOT / "expectations"
    sql_dir: Path = PROJECT_ROOT / "sql"
    spark: SparkSettings = SparkSettings()
    mlflow: MlflowSettings = MlflowSettings()
    airflow: AirflowSettings = AirflowSettings()
    serving_snapshots_kept: int = Field(3, ge=1)
    # State on an object store: this host's copy of its serving folder, where publish builds
    # snapshots and serve reads them (one folder per state prefix below it).
    serving_cache_dir: Path = Path(".serving-cache")
    serve: ServeSettings = ServeSettings()

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_location(cls, value: Any) -> StatePath:
        return state_location(value, root=PROJECT_ROOT)

    @field_validator("conf_dir", "expectations_dir", "sql_dir", "serving_cache_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()

    @model_validator(mode="after")
    def _tracking_database_off_the_store(self) -> Settings:
        if self.state_on_object_store and not self.mlflow.tracking_uri:
            raise ValueError(
                f"mlflow.tracking_uri: state_dir {self.state_dir} is on an object store, where "
                "MLflow's SQLite database cannot live: set MLFLOW_TRACKING_URI to a database "
                "(postgresql://... for a team, sqlite:////<local path>/mlflow.db on one host) "
                "or to a tracking server (http://...)"
            )
        return self

    @property
    def state_on_object_store(self) -> bool:
        return is_object_store(self.state_dir)

    @property
    def delta_dir(self) -> StatePath:
        return self.state_dir / "delta"

    @property
    def landing_dir(self) -> StatePath:
        return self.state_dir / "landing"

    @property
    def serving_dir(self) -> StatePath:
        return self.state_dir / "serving"

    @property
    def local_serving_dir(self) -> Path:
        """Where this host builds and reads serving snapshots: the serving folder itself, or
        with the state on an object store, this host's copy of it."""
        if isinstance(self.serving_dir, Path):
            return self.serving_dir
        return self.serving_cache_dir / str(self.serving_dir).split("://", 1)[1]

    @property
    def reports_dir(self) -> StatePath:
        return self.state_dir / "reports"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> StatePath:
        return self.state_dir / "mlflow" / "artifacts"

    def table_path(self, table: str) -> StatePath:
        return self.delta_dir / table


# ---------------------------------------------------------------- usecases/<name>.yaml

ColumnType = Literal["string", "int", "long", "double", "boolean", "date", "timestamp"]
# A column name a use case declares or uses: a safe identifier (prescore.identifiers), checked
# wherever it appears, so the error names the field and the value.
Column = Annotated[str, AfterValidator(check_identifier)]
Severity = Literal["error", "warn"]
# The declared types that fit each role of a column.
LABEL_TYPES: dict[str, tuple[str, ...]] = {
    "binary": ("int", "long", "boolean"),  # 0/1 or false/true
    "regression": ("int", "long", "double"),
}
KEY_TYPES = ("string", "int", "long", "date")  # what the serving key file stores exactly
NUMERIC_FEATURE_TYPES = ("int", "long", "double", "boolean")
CATEGORICAL_FEATURE_TYPES = ("string",)  # levels are strings, matched as written
NUMERIC_RULE_TYPES = ("int", "long", "double")  # clip, outliers, valid_range, impute mean/median
TIME_TYPES = ("date", "timestamp")


_JDBC_FIELDS = ("url", "table", "query", "driver", "driver_package", "user_env", "password_env")
# Read as missing in csv and json sources unless the use case lists its own `null_values`.
DEFAULT_NULL_VALUES = ("", "NA", "NaN", "null")
_CREDENTIAL = re.compile(r"(^|[;&?:])\s*(user|password)\s*=", re.IGNORECASE)


class SourceSettings(_Strict):
    """Landing files (csv with a header, json lines, parquet) under <path>/run_date=YYYY-MM-DD/,
    an existing Delta table at <path>, or a JDBC table or query; each must match `schema` exactly,
    unless `columns: ignore_undeclared` (then columns not in `schema` are left out, not refused).

    Text formats (csv, json): a value equal to one of `null_values` (whitespace trimmed) is
    missing; "NaN" is among the defaults so that a text NaN becomes null, which the cleaning
    rules fill or drop, not a double NaN that they would pass through. A value that does not parse
    as its column's type fails the ingest (`on_bad_value: fail`) or lands in raw as null, its text
    kept in `_bad_values`, and clean quarantines the row (`on_bad_value: quarantine`).

    JDBC credentials come from the environment only: `user_env` and `password_env` name the
    variables, and a user or password written into the url or the options is refused.
    """

    format: Literal["csv", "parquet", "json", "delta", "jdbc"]
    path: str | None = None  # relative to the state folder's landing/ unless absolute
    schema_: dict[Column, ColumnType] = Field(alias="schema")
    options: dict[str, str] = Field(default_factory=dict)
    url: str | None = None  # jdbc:<subprotocol>:..., without credentials
    table: str | None = None  # jdbc: a table name, or
    query: str | None = None  # jdbc: a SELECT whose columns are the schema's
    driver: str | None = None  # jdbc: the driver class, e.g. org.sqlite.JDBC
    driver_package: str | None = None  # jdbc: its Maven coordinate, added to the Spark session
    user_env: str | None = None  # jdbc: the environment variable holding the user
    password_env: str | None = None  # jdbc: the environment variable holding the password
    columns: Literal["declared", "ignore_undeclared"] = "declared"
    null_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NULL_VALUES))
    on_bad_value: Literal["fail", "quarantine"] = "fail"

    @model_validator(mode="after")
    def _text_options(self) -> SourceSettings:
        """null_values and on_bad_value: quarantine only mean something for text formats."""
        if self.format in ("csv", "json"):
            return self
        if "null_values" in self.model_fields_set:
            raise ValueError(f"null_values only apply to formats csv and json, not {self.format}")
        if self.on_bad_value == "quarantine":
            raise ValueError(
                f"on_bad_value: quarantine only applies to formats csv and json; {self.format} "
                "is typed (a value of the wrong type fails the ingest naming the column)"
            )
        return self

    @model_validator(mode="after")
    def _fields_of_format(self) -> SourceSettings:
        given = [name for name in _JDBC_FIELDS if getattr(self, name) is not None]
        if self.format != "jdbc":
            if self.path is None:
                raise ValueError(f"format {self.format} needs a path")
            if given:
                raise ValueError(f"{given} only apply to format jdbc")
            return self
        if self.path is not None:
            raise ValueError("format jdbc reads url and table (or query), not path")
        for name in ("url", "driver", "driver_package"):
            if getattr(self, name) is None:
                raise ValueError(f"format jdbc needs {name}")
        if (self.table is None) == (self.query is None):
            raise ValueError("format jdbc needs exactly one of table or query")
        if _CREDENTIAL.search(self.url or "") or {"user", "password"} & {
            k.lower() for k in self.options
        }:
            raise ValueError(
                "jdbc credentials come from the environment only: name the variables in "
                "user_env and password_env, not in url or options"
            )
        return self


# Columns prescore adds to its tables: a derived column cannot take their names.
_RESERVED_COLUMNS = frozenset(
    {
        catalog.RUN_DATE,
        catalog.SPLIT,
        catalog.SCORE,
        catalog.TARGET_DATE,
        catalog.HORIZON,
        catalog.QUARANTINE_REASON,
        catalog.SOURCE_FILE,
        catalog.INGESTED_AT,
    }
)


class DerivedColumn(_Strict):
    """A column computed in clean from one raw row: a Spark SQL expression over source columns,
    cast to `type`. Checked at load without Spark (prescore.expressions): it parses, reads only
    declared source columns, and calls only allow-listed row-wise built-ins."""

    sql: str = Field(min_length=1)
    type: ColumnType

    @field_validator("sql")
    @classmethod
    def _row_wise_expression(cls, sql: str) -> str:
        try:
            referenced_columns(sql)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return sql

    @property
    def columns(self) -> set[str]:
        """The source columns the expression reads."""
        return referenced_columns(self.sql)


class PiiRule(_Strict):
    """hash (HMAC-SHA256), drop, or generalise: `band` (integer bands, e.g. age 30-39) or `keep`
    (the first characters only, e.g. a postcode's outward code)."""

    method: Literal["hash", "drop", "generalise"]
    band: int | None = Field(None, ge=1)
    keep: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _generalise_how(self) -> PiiRule:
        given = [name for name in ("band", "keep") if getattr(self, name) is not None]
        if self.method == "generalise" and len(given) != 1:
            raise ValueError("generalise needs exactly one of band (numbers) or keep (text)")
        if self.method != "generalise" and given:
            raise ValueError(f"{given[0]} only applies to method generalise")
        return self


class RangeRule(_Strict):
    min: float | None = None
    max: float | None = None


class ImputeRule(_Strict):
    """How a column's missing values are filled; mean, median and mode are fitted on train rows."""

    strategy: Literal["mean", "median", "mode", "constant", "drop"]
    value: float | int | str | None = None  # the constant

    @model_validator(mode="after")
    def _constant_has_value(self) -> ImputeRule:
        if (self.strategy == "constant") != (self.value is not None):
            raise ValueError("value is required by strategy constant, and only by it")
        return self


class OutlierRule(_Strict):
    """Bounds fitted on train rows: iqr (q1 - k*IQR, q3 + k*IQR) or zscore (mean +- k*stddev);
    a value outside is clipped to the bound or its row quarantined."""

    method: Literal["iqr", "zscore"]
    k: float = Field(1.5, gt=0)
    action: Literal["clip", "quarantine"] = "clip"


class LearnedLevels(_Strict):
    """`levels: auto`: a categorical's levels learned from the training split when a model is
    trained (the `max_levels` most frequent values seen at least `min_count` times, most frequent
    first) and stored with that model version; any other value is coded as missing."""

    levels: Literal["auto"] = "auto"
    max_levels: int = Field(100, ge=1)
    min_count: int = Field(1, ge=1)


def _levels_shorthand(value: Any) -> Any:
    return {"levels": "auto"} if value == "auto" else value


# A categorical feature's levels: the list, as written, or learned (`auto`, or its settings).
Levels = Annotated[list[str] | LearnedLevels, BeforeValidator(_levels_shorthand)]


class CleaningSettings(_Strict):
    fill: dict[Column, float | int | str] = Field(
        default_factory=dict
    )  # constants (= impute constant)
    impute: dict[Column, ImputeRule] = Field(default_factory=dict)
    clip: dict[Column, RangeRule] = Field(default_factory=dict)  # fixed bounds
    outliers: dict[Column, OutlierRule] = Field(default_factory=dict)
    valid_range: dict[Column, RangeRule] = Field(default_factory=dict)
    drop_columns: list[Column] = Field(default_factory=list)  # declared columns left out of clean
    max_quarantined_fraction: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _one_fill_per_column(self) -> CleaningSettings:
        twice = sorted(set(self.fill) & set(self.impute))
        if twice:
            raise ValueError(f"columns {twice} are in both fill and impute: keep one")
        return self

    @property
    def columns(self) -> set[str]:
        """Every column a cleaning rule names."""
        named: list[set[str]] = [
            set(self.fill),
            set(self.impute),
            set(self.clip),
            set(self.outliers),
            set(self.valid_range),
        ]
        return set().union(*named, self.drop_columns)


class SplitSettings(_Strict):
    """by key: shares of a seeded hash of the key. by time (forecasting): the event_time of a row
    against the run date: the last `test_days` are test, the `validation_days` before them
    validation, everything earlier train."""

    by: Literal["key", "time"] = "key"
    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    validation_days: int = Field(0, ge=0)
    test_days: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        if self.by == "time" and self.test_days < 1:
            raise ValueError("split by time needs test_days >= 1")
        if self.by == "key" and (self.test_days or self.validation_days):
            raise ValueError("test_days and validation_days only apply to split by time")
        return self


# Test-split metrics by task; the promotion gate and the search may use any of them.
BINARY_METRICS = ("auc", "pr_auc", "log_loss", "accuracy", "f1")
REGRESSION_METRICS = ("rmse", "mae", "mape")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape"})


class PromotionSettings(_Strict):
    """When a new version may replace @champion: better by `margin` on the same test split.

    `minimum` is the absolute bar any champion must meet: a floor for metrics where higher is
    better (auc), a ceiling where lower is better (rmse). None: no bar.
    """

    metric: Literal["auc", "pr_auc", "log_loss", "accuracy", "f1", "rmse", "mae", "mape"] = "auc"
    margin: float = Field(0.0, ge=0)
    minimum: float | None = None


class SearchRange(_Strict):
    """One hyperparameter's range for the search: ints or floats in [low, high]."""

    type: Literal["int", "float"] = "float"
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class TuningSettings(_Strict):
    """Hyperparameter search (Optuna TPE, seeded): n_trials 0 turns it off."""

    n_trials: int = Field(0, ge=0)
    timeout_seconds: float | None = Field(None, gt=0)  # the search stops at whichever comes first
    seed: int = 7
    search_space: dict[str, SearchRange] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _space_when_on(self) -> TuningSettings:
        if self.n_trials and not self.search_space:
            raise ValueError("n_trials > 0 needs a search_space")
        return self


class ModelSettings(_Strict):
    params: dict[str, float | int | str] = Field(default_factory=dict)
    num_workers: int | None = Field(None, ge=1)  # None: the cores Spark has (defaultParallelism)
    min_test_rows: int = Field(20, ge=1)
    early_stopping_rounds: int = Field(10, ge=1)  # on the validation split
    threshold: float = Field(0.5, gt=0, lt=1)  # binary: score >= threshold is the positive class
    promotion: PromotionSettings = PromotionSettings()
    tuning: TuningSettings = TuningSettings()


class ExplainSettings(_Strict):
    """Store the top_k feature contributions behind each score (XGBoost's pred_contribs)."""

    top_k: int = Field(3, ge=1)
    # Saabas' path attribution instead of exact TreeSHAP: cheaper on deep trees; both add up with
    # the bias to the margin (bench/README.md, score with reasons).
    approximate: bool = False


class ScoreSettings(_Strict):
    ttl_days: int = Field(7, ge=1)  # valid_until = run date + ttl_days: expired after that
    stale_after_hours: float = Field(36, gt=0)  # still valid, but a scheduled run was missed
    shadow: bool = True  # also score @challenger, when set, into shadow_<usecase>
    # Rows per Arrow batch handed to the booster: at 10M rows 10,000 and 50,000 score alike, on
    # small data 50,000 wins where per-batch costs weigh more (bench/README.md, score).
    arrow_batch_rows: int = Field(50_000, ge=1_000)
    explain: ExplainSettings | None = None  # None: scores only, no reasons


class PublishSettings(_Strict):
    """Checks a candidate must pass beyond counts and keys: its drift from the published scores."""

    max_psi: float = Field(0.25, gt=0)  # population stability index vs the published version
    psi_bins: int = Field(10, ge=2)  # [0, 1] in equal bins (binary), else reference quantiles
    # Below this many rows on either side PSI is noise (fewer rows than a bin needs): not checked.
    psi_min_rows: int = Field(100, ge=1)


class MonitoringSettings(_Strict):
    """After each publish: thresholds on drift and on realized performance. Over one, the monitor
    stage stores the breach and alerts through the webhook (it never fails the run: the scores
    are already published); with `retrain_on_drift`, a breach also triggers the train DAG."""

    max_feature_psi: float = Field(0.25, gt=0)  # per feature, champion's training rows vs batch
    max_ks: float = Field(0.2, gt=0, le=1)  # per numeric feature, same comparison
    max_prediction_psi: float = Field(0.25, gt=0)  # scores vs the previous publish's
    min_auc: float | None = Field(None, ge=0, le=1)  # realized, once labels arrived (binary)
    max_rmse: float | None = Field(None, gt=0)  # realized (regression)
    max_mape: float | None = Field(None, gt=0)  # realized, a fraction (regression)
    psi_bins: int = Field(10, ge=2)  # numeric features: the reference's deciles
    ks_bins: int = Field(100, ge=10)  # KS evaluated at the reference's percentiles
    min_rows: int = Field(100, ge=1)  # fewer rows on either side: not measured
    report_sample_rows: int = Field(5000, ge=100)  # rows per side for the Evidently page
    retrain_on_drift: bool = False


# A cron preset (@daily, @weekly, ...) or a five-field cron expression, evaluated in UTC.
_CRON = r"^(@(hourly|daily|weekly|monthly|quarterly|yearly)|(\S+\s+){4}\S+)$"


class ScheduleSettings(_Strict):
    """When the use case's DAGs run: scoring on fresh data, training on its own cadence."""

    score: str = Field("@daily", pattern=_CRON)
    train: str = Field("@weekly", pattern=_CRON)


CalendarFeature = Literal[
    "day_of_week", "day_of_month", "day_of_year", "week_of_year", "month", "is_weekend", "holiday"
]


class TimeSeriesSettings(_Strict):
    """A forecasting use case: one row per series (`keys`) per day (`date_column`) in clean; the
    model forecasts `label` for each of the next `horizon_days` days (prescore.training.timeseries).

    Features of an origin day t (the run date when scoring; t itself is observed): `lags` k are
    the label on day t - k (0: day t), `rolling_means` w the mean of the observed days t-w+1..t,
    `calendar` features describe the TARGET day, and `horizon` (1..H) tells the one model which
    day ahead it predicts.
    """

    date_column: Column
    horizon_days: int = Field(ge=1, le=366)
    lags: list[int] = Field(default_factory=lambda: [0, 7])
    rolling_means: list[int] = Field(default_factory=list)
    calendar: list[CalendarFeature] = Field(default_factory=list)
    holidays: list[str] = Field(default_factory=list)  # MM-DD, every year (calendar: holiday)
    history_days: int = Field(365, ge=2)  # days of clean history train reads, up to the run date

    @field_validator("lags", "rolling_means", "calendar")
    @classmethod
    def _distinct(cls, values: list[Any]) -> list[Any]:
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> TimeSeriesSettings:
        if any(k < 0 for k in self.lags):
            raise ValueError("lags are days before the origin: 0 or more")
        if any(w < 1 for w in self.rolling_means):
            raise ValueError("rolling_means are windows of 1 day or more")
        if not self.lags and not self.rolling_means:
            raise ValueError("declare at least one lag or rolling mean")
        bad = [
            h
            for h in self.holidays
            if not re.fullmatch(r"(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", h)
        ]
        if bad:
            raise ValueError(f"holidays {bad} are not MM-DD")
        if ("holiday" in self.calendar) != bool(self.holidays):
            raise ValueError("calendar feature holiday needs the holidays list, and only it")
        if self.history_days <= self.context_days + self.horizon_days:
            raise ValueError(
                f"history_days ({self.history_days}) must exceed the longest lag or window plus "
                f"horizon_days ({self.context_days + self.horizon_days}): no labelled origin else"
            )
        return self

    @property
    def context_days(self) -> int:
        """Days of history, up to and including the origin, that one origin's features read."""
        return max([k + 1 for k in self.lags] + self.rolling_means)

    def derived_features(self, label: str) -> list[str]:
        """The model features built from the history, in a fixed order."""
        return [
            *(f"{label}_lag_{k}" for k in self.lags),
            *(f"{label}_mean_{w}d" for w in self.rolling_means),
            *self.calendar,
            "horizon",
        ]


class UseCase(_Strict):
    name: str = Field(pattern=f"^{USECASE_NAME}$")  # = the file name: conf/usecases/<name>.yaml
    entity: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    source: SourceSettings
    # Columns computed in clean from each raw row, in order, before dedupe, split and fitting:
    # usable wherever a source column is (key, label, feature, cleaning rule), never in raw.
    derive: dict[Column, DerivedColumn] = Field(default_factory=dict)
    keys: list[Column] = Field(min_length=1)
    # Among rows sharing a key, the latest by event_time is kept; None: keys are unique, and a
    # duplicate key fails the clean stage.
    event_time: Column | None = None
    label: Column
    task: Literal["binary", "regression"]
    numeric_features: list[Column] = Field(default_factory=list)
    # Levels as written (a known list), or learned with the model (`auto`): a value outside them
    # is coded as missing, and counted by monitor.
    categorical_features: dict[Column, Levels] = Field(default_factory=dict)
    pii: dict[Column, PiiRule] = Field(default_factory=dict)
    cleaning: CleaningSettings = CleaningSettings()
    # The suite's file name (without .json) in expectations/: a plain name, never a path.
    expectations: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    split: SplitSettings = SplitSettings()
    model: ModelSettings = ModelSettings()
    score: ScoreSettings = ScoreSettings()
    publish: PublishSettings = PublishSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    time_series: TimeSeriesSettings | None = None  # forecasting: see TimeSeriesSettings
    # Days of raw_<entity> and quarantine_<entity> kept before a run date (`prescore retention`
    # and the score DAG delete older run_date partitions and vacuum their files).
    retention_days: int = Field(90, ge=1)

    @model_validator(mode="after")
    def _columns_declared(self) -> UseCase:
        self._check_derive()
        declared = set(self.column_types)
        used = {*self.keys, self.label, *self.source_features, *self.pii}
        used |= {self.event_time} if self.event_time is not None else set()
        missing = sorted((used | self.cleaning.columns) - declared)
        if missing:
            raise ValueError(f"columns {missing} are used but not declared in source.schema")
        needed = sorted(set(self.cleaning.drop_columns) & used)
        if needed:
            raise ValueError(f"cleaning.drop_columns {needed} are keys, features, label or PII")
        for column, rule in self.pii.items():
            if rule.band and self.column_types[column] not in ("int", "long"):
                raise ValueError(f"pii.{column}: band needs an int or long column")
            if rule.keep and self.column_types[column] != "string":
                raise ValueError(f"pii.{column}: keep needs a string column")
        leaking = sorted(set(self.pii) & set(self.source_features))
        if leaking:
            raise ValueError(f"PII columns {leaking} cannot be model features")
        if not self.features:
            raise ValueError("declare at least one numeric or categorical feature")
        if self.time_series is not None:
            self._check_time_series(self.time_series)
        return self

    @model_validator(mode="after")
    def _roles_fit(self) -> UseCase:
        """Each column plays one role (key, label or feature), with a type that fits it."""
        self._check_roles_disjoint()
        self._check_role_types()
        self._check_model_input_rules()
        if self.split.by == "time" and self.split_time_column is None:
            raise ValueError(
                "split: by time reads each row's day from event_time (or time_series.date_column): "
                "declare one, or split by key"
            )
        return self

    def _check_roles_disjoint(self) -> None:
        roles = {
            "keys": self.keys,
            "label": [self.label],
            "numeric_features": self.numeric_features,
            "categorical_features": list(self.categorical_features),
        }
        for field, columns in roles.items():
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:
                raise ValueError(f"{field}: {twice} listed more than once")
        fields = list(roles)
        for i, first in enumerate(fields):
            for second in fields[i + 1 :]:
                both = sorted(set(roles[first]) & set(roles[second]))
                if both:
                    why = " (a key identifies a row, it is not a model input)" * (first == "keys")
                    raise ValueError(
                        f"{first} and {second} both name {both}: a column is a key, the label or "
                        f"a feature, one role only{why}"
                    )

    def _check_role_types(self) -> None:
        types = self.column_types

        def refuse(field: str, columns: list[str], allowed: tuple[str, ...], why: str) -> None:
            wrong = [f"{c} ({types[c]})" for c in columns if types[c] not in allowed]
            if wrong:
                one_of = " or ".join(filter(None, [", ".join(allowed[:-1]), allowed[-1]]))
                raise ValueError(f"{field}: {', '.join(wrong)} must be {one_of} ({why})")

        refuse(
            "keys",
            self.keys,
            KEY_TYPES,
            "a lookup matches keys exactly; declare a timestamp key as a string, or derive one",
        )
        refuse("label", [self.label], LABEL_TYPES[self.task], f"task {self.task}")
        if self.event_time is not None:
            refuse("event_time", [self.event_time], TIME_TYPES, "the latest row of a key wins")
        refuse("numeric_features", self.numeric_features, NUMERIC_FEATURE_TYPES, "model input")
        refuse(
            "categorical_features",
            list(self.categorical_features),
            CATEGORICAL_FEATURE_TYPES,
            "matched against the levels; declare a numeric code as a numeric feature",
        )
        cleaning = self.cleaning
        for field, columns in (
            ("cleaning.clip", list(cleaning.clip)),
            ("cleaning.outliers", list(cleaning.outliers)),
            ("cleaning.valid_range", list(cleaning.valid_range)),
            (
                "cleaning.impute",
                [c for c, r in cleaning.impute.items() if r.strategy in ("mean", "median")],
            ),
        ):
            refuse(field, columns, NUMERIC_RULE_TYPES, "a numeric rule")

    def _check_model_input_rules(self) -> None:
        """Fills and clips prepare the model's input: they travel with each model version (fitted
        on its training rows) and so name features; row rules (`valid_range`, `impute: drop`,
        `outliers` with `action: quarantine`) may name any column."""
        cleaning, features = self.cleaning, set(self.source_features)
        for field, columns in (
            ("cleaning.fill", list(cleaning.fill)),
            ("cleaning.impute", [c for c, r in cleaning.impute.items() if r.strategy != "drop"]),
            ("cleaning.clip", list(cleaning.clip)),
            ("cleaning.outliers", [c for c, r in cleaning.outliers.items() if r.action == "clip"]),
        ):
            other = sorted(set(columns) - features)
            if other:
                raise ValueError(
                    f"{field}: {other} are not features: fills and clips prepare the model's "
                    "input and are stored with each model version (a row rule may name any "
                    "column: valid_range, impute drop, outliers with action quarantine)"
                )

    def _check_derive(self) -> None:
        """Derived names are new, and each expression reads declared source columns, never PII
        in the clear (a derived value would carry it past clean)."""
        for name, derived in self.derive.items():
            if name in self.source.schema_:
                raise ValueError(f"derive.{name}: the name is a source column already")
            if name in _RESERVED_COLUMNS:
                raise ValueError(f"derive.{name}: the name is one prescore's tables use")
            unknown = sorted(derived.columns - set(self.source.schema_))
            if unknown:
                raise ValueError(f"derive.{name}: reads {unknown}, not declared in source.schema")
            pii = sorted(derived.columns & set(self.pii))
            if pii:
                raise ValueError(
                    f"derive.{name}: reads PII columns {pii}: a derived value would carry "
                    "them past clean in the clear"
                )

    def _check_time_series(self, ts: TimeSeriesSettings) -> None:
        schema = self.column_types
        if schema.get(ts.date_column) != "date":
            raise ValueError(f"time_series.date_column {ts.date_column!r} must be a declared date")
        if schema[self.label] not in ("int", "long", "double"):
            raise ValueError(f"time_series: label {self.label!r} must be int, long or double")
        if self.task != "regression":
            raise ValueError("time_series needs task: regression")
        if self.split.by != "time":
            raise ValueError("time_series needs split by: time (on the target date)")
        if ts.date_column in self.keys:
            raise ValueError("time_series.date_column is not a key: keys name the series")
        clash = sorted({*ts.derived_features(self.label), TARGET_DATE} & set(schema))
        if clash:
            raise ValueError(f"declared columns {clash} clash with time_series feature names")
        if set(self.source_features) & {ts.date_column, self.label}:
            raise ValueError("the date column and the label are not source features")

    @property
    def column_types(self) -> dict[str, str]:
        """Every column a use case may name, with its type: source.schema, then `derive`."""
        return {**self.source.schema_, **{c: d.type for c, d in self.derive.items()}}

    @property
    def split_time_column(self) -> str | None:
        """The column a split by time reads each row's day from: event_time, else a time
        series' date column; None when there is neither."""
        if self.event_time is not None:
            return self.event_time
        return self.time_series.date_column if self.time_series is not None else None

    @property
    def source_features(self) -> list[str]:
        """The declared columns the model reads as they are (for a time series: on the origin day)."""
        return [*self.numeric_features, *self.categorical_features]

    @property
    def features(self) -> list[str]:
        """The model's input columns: the source features, then those built from the history."""
        if self.time_series is None:
            return self.source_features
        return [*self.source_features, *self.time_series.derived_features(self.label)]

    @property
    def row_keys(self) -> list[str]:
        """What identifies one clean row: the keys, and the day for a time series."""
        return self.keys if self.time_series is None else [*self.keys, self.time_series.date_column]

    @property
    def published_keys(self) -> list[str]:
        """What identifies one prediction: the keys, and the target day for a time series."""
        return self.keys if self.time_series is None else [*self.keys, TARGET_DATE]

    # The use case's tables, as prescore.catalog names them.

    @property
    def raw_table(self) -> str:
        return catalog.raw_table(self.entity)

    @property
    def clean_table(self) -> str:
        return catalog.clean_table(self.entity)

    @property
    def quarantine_table(self) -> str:
        return catalog.quarantine_table(self.entity)

    @property
    def validation_table(self) -> str:
        return catalog.validation_table(self.entity)

    @property
    def profile_table(self) -> str:
        return catalog.profile_table(self.entity)

    @property
    def cleaning_stats_table(self) -> str:
        return catalog.cleaning_stats_table(self.entity)

    @property
    def predictions_table(self) -> str:
        return catalog.predictions_table(self.name)

    @property
    def shadow_table(self) -> str:
        return catalog.shadow_table(self.name)

    @property
    def monitoring_table(self) -> str:
        return catalog.monitoring_table(self.name)

    @property
    def tables(self) -> list[str]:
        """Every Delta table of the use case: its entity's, then its own."""
        return [
            self.raw_table,
            self.clean_table,
            self.quarantine_table,
            self.validation_table,
            self.profile_table,
            self.cleaning_stats_table,
            self.predictions_table,
            self.shadow_table,
            self.monitoring_table,
        ]


# ---------------------------------------------------------------- loading


def _expand_env(value: Any, *, source: Path) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: _expand_env(v, source=source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source=source) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: environment variable {name} is not set")

    return _ENV_VAR.sub(substitute, value)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (is {HOME_VARIABLE} the project folder?)"
        raise ConfigError(f"{path}: file not found{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return dict(_expand_env(data, source=path))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in err["loc"])
        # A check of the whole use case names its fields in its message.
        lines.append(f"{field}: {message}" if field else message)
    return "; ".join(lines)


def load_settings(conf_dir: Path | None = None, env: str | None = None) -> Settings:
    """Load conf/base.yaml, then conf/env/<env>.yaml on top (env from PRESCORE_ENV)."""
    conf_dir = conf_dir or Path(os.environ.get("PRESCORE_CONF_DIR", DEFAULT_CONF_DIR))
    base_path = conf_dir / "base.yaml"
    data = _read_yaml(base_path)
    env = env or os.environ.get("PRESCORE_ENV")
    sources = [base_path]
    if env:
        env_path = conf_dir / "env" / f"{env}.yaml"
        data = _merge(data, _read_yaml(env_path))
        sources.append(env_path)
    data.setdefault("conf_dir", str(conf_dir))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        names = " + ".join(str(s) for s in sources)
        raise ConfigError(f"{names}: {_describe(exc)}") from exc


# ---------------------------------------------------------------- expectation suites, as data

SUITE_KEYS = frozenset({"name", "expectations", "notes", "meta"})
# The kwargs of a GX expectation that name the columns it reads.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list", "column_set")
# Columns ingest adds to every raw row, which a suite may check besides the declared ones.
RAW_LINEAGE_COLUMNS = frozenset({RUN_DATE, SOURCE_FILE, INGESTED_AT})


class SuiteExpectation(NamedTuple):
    """One expectation of a suite file as written: what `prescore check` shows and checks."""

    position: int  # its place in the file, from 0
    type: str
    severity: str  # GX's own: critical (its default), warning or info
    columns: list[str]  # the columns its kwargs name


def read_suite(path: Path) -> dict[str, Any]:
    """A suite file's JSON (no Great Expectations import): an object with a string name, known
    keys only and a non-empty list of expectations; else a ConfigError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: expectation suite not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{path}: expected an object with a string 'name'")
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (allowed: {sorted(SUITE_KEYS)})")
    specs = data.get("expectations")
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"{path}: 'expectations' must be a non-empty list")
    return data


def suite_expectations(path: Path) -> list[SuiteExpectation]:
    """Each expectation of a suite file: its type, severity and the columns it names."""
    found = []
    for index, spec in enumerate(read_suite(path)["expectations"]):
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: expectation #{index}: expected an object, got {spec!r}")
        kwargs = spec.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{path}: expectation #{index}: kwargs must be an object")
        columns = [kwargs[k] for k in _COLUMN_KWARGS if k in kwargs]
        for name in _COLUMN_LIST_KWARGS:
            listed = kwargs.get(name) or []
            columns += listed if isinstance(listed, list) else [listed]
        kind = spec.get("type")
        severity = spec.get("severity") or "critical"
        found.append(SuiteExpectation(index, str(kind), str(severity), [str(c) for c in columns]))
    return found


def suite_path(usecase: UseCase, settings: Settings) -> Path:
    """The use case's suite file: expectations/<expectations>.json."""
    return settings.expectations_dir / f"{usecase.expectations}.json"


def _check_suite(path: Path, usecase: UseCase, settings: Settings) -> None:
    """Every column the use case's suite names is declared, whatever the expectation's severity
    (a `warning` on a mistyped column would otherwise only ever log its failure)."""
    suite = suite_path(usecase, settings)
    try:
        expectations = suite_expectations(suite)
    except ConfigError as exc:
        raise ConfigError(f"{path}: expectations: {exc}") from exc
    declared = set(usecase.source.schema_) | RAW_LINEAGE_COLUMNS
    for expectation in expectations:
        unknown = [c for c in expectation.columns if c not in declared]
        if unknown:
            derived = " (derive: columns exist in clean only; the suite checks raw)"
            raise ConfigError(
                f"{path}: expectations: {suite}: expectation #{expectation.position} "
                f"({expectation.type}, severity {expectation.severity}): columns {unknown} are "
                f"not declared in source.schema{derived if set(unknown) & set(usecase.derive) else ''}"
            )


def load_usecase(name: str, settings: Settings) -> UseCase:
    """Load conf/usecases/<name>.yaml: valid, named after its file, alone on its entity.

    `name` must be a use-case name before any path is built from it, so `../x` never reaches
    the file system. The entity check reads only the `entity:` of the other files.
    """
    try:
        check_usecase_name(name)
    except ValueError as exc:
        raise ConfigError(f"use case {exc}") from None
    path = _usecases_dir(settings) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_usecases(settings)) or "none"
        raise ConfigError(f"{path}: no use case named {name!r} (known: {known})")
    usecase = _load_usecase_file(path, settings)
    others = {p: _declared_entity(p) for p in _usecase_files(settings) if p.name != path.name}
    _refuse_shared_entity(path, usecase.entity, others)
    return usecase


class LoadedUseCases(NamedTuple):
    """Every file of conf/usecases/, each loaded on its own."""

    usecases: dict[str, UseCase]  # by name, the valid ones
    errors: dict[Path, ConfigError]  # by file, why it was not loaded


def load_usecases(settings: Settings) -> LoadedUseCases:
    """Load every use case, each file once; a bad file is reported in `errors`, never raised, so
    it costs only its own use case (the DAGs, the server and the checks load the others)."""
    files = _usecase_files(settings)
    valid: dict[Path, UseCase] = {}
    errors: dict[Path, ConfigError] = {}
    for path in files:
        try:
            valid[path] = _load_usecase_file(path, settings)
        except ConfigError as exc:
            errors[path] = exc
    entities = {p: valid[p].entity if p in valid else _declared_entity(p) for p in files}
    for path, usecase in list(valid.items()):
        others = {p: e for p, e in entities.items() if p != path}
        try:
            _refuse_shared_entity(path, usecase.entity, others)
        except ConfigError as exc:
            errors[path] = exc
            del valid[path]
    return LoadedUseCases({u.name: u for u in valid.values()}, dict(sorted(errors.items())))


def list_usecases(settings: Settings) -> list[str]:
    """The name of every file in conf/usecases/, valid or not."""
    return [path.stem for path in _usecase_files(settings)]


def _usecases_dir(settings: Settings) -> Path:
    return settings.conf_dir / "usecases"


def _usecase_files(settings: Settings) -> list[Path]:
    return sorted(_usecases_dir(settings).glob("*.yaml"))


def _load_usecase_file(path: Path, settings: Settings) -> UseCase:
    """One use-case file, validated as a whole, its `name:` the file's name, every column its
    expectation suite names declared."""
    try:
        check_usecase_name(path.stem)
    except ValueError as exc:
        raise ConfigError(f"{path}: the file name is not a use-case name: {exc}") from None
    data = _read_yaml(path)
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        raise ConfigError(
            f"{path}: name: {name!r} differs from the file name {path.stem!r}: a use case is "
            f"named after its file, conf/usecases/<name>.yaml"
        )
    try:
        usecase = UseCase.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    _check_suite(path, usecase, settings)
    return usecase


# The C parser when PyYAML has it: the entity check reads every other use-case file.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _declared_entity(path: Path) -> str | None:
    """The `entity:` a use-case file declares, or None when it cannot be read (that file's own
    load reports why; here it must not break the use case being loaded)."""
    try:
        data = yaml.load(
            path.read_text(encoding="utf-8"), Loader=_FAST_LOADER
        )  # a safe loader, C or Python
        entity = data.get("entity") if isinstance(data, dict) else None
        return _expand_env(entity, source=path) if isinstance(entity, str) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ConfigError):
        return None


def _refuse_shared_entity(path: Path, entity: str, others: dict[Path, str | None]) -> None:
    """Two use cases on one entity would write the same raw, clean, quarantine, validation and
    profile tables, each run replacing the other's rows: refuse it, naming both files."""
    shared = sorted(str(p) for p, other in others.items() if other == entity)
    if shared:
        raise ConfigError(
            f"{path}: entity: {entity!r} is also the entity of {', '.join(shared)}: use cases "
            f"on one entity would overwrite each other's {catalog.raw_table(entity)}, "
            f"{catalog.clean_table(entity)}, {catalog.quarantine_table(entity)} and "
            f"{catalog.validation_table(entity)} tables; give each its own entity"
        )
