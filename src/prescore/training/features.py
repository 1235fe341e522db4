"""The model's view of a clean frame: the declared features as float32, missing as NaN.

Training and scoring both go through `as_model_input`, so the model sees the same matrix twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def as_model_input(df: DataFrame, *, features: list[str]) -> DataFrame:
    """Cast every feature to float, null -> NaN (XGBoost's missing value); other columns kept."""
    from pyspark.sql import functions as F

    nan = F.lit(float("nan")).cast("float")  # a double NaN would widen the column back to double
    for column in features:
        df = df.withColumn(column, F.coalesce(F.col(column).cast("float"), nan))
    return df
