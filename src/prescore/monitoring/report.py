"""The monitoring report of one run date: a self-contained HTML page (plots as base64 PNG), in the
style of the data report (prescore.data.report); the monitor stage saves it under reports/<usecase>/
and logs it to MLflow.

Plots: PSI per feature and KS per numeric feature against their thresholds, the published scores'
histogram against the previous publish's, and the realized metrics over run dates. An Evidently
data-drift page on a bounded sample (`monitoring.report_sample_rows` rows per side) is written
beside it and linked; the metrics stored and alerted on are always the full-data ones computed in
Spark.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore.catalog import SCORE
from prescore.data.report import PAGE_HEAD, png_base64
from prescore.monitoring.metrics import score_bin_counts
from prescore.platform.files import write_text_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pyspark.sql import DataFrame, Row

    from prescore.config import UseCase
    from prescore.monitoring.measures import Measure

log = logging.getLogger(__name__)
HISTOGRAM_BINS = 20
SEED = 7
TEMPLATE = (
    PAGE_HEAD
    + """<h1>{{ title }}</h1>
<p>{{ measures|length }} measures, {{ breaches|length }} over their threshold{% if breaches %}:
{% for m in breaches %}<b>{{ m.metric }}{% if m.feature %} ({{ m.feature }}){% endif %}</b> {{ fmt(m.value) }}
(threshold {{ fmt(m.threshold) }}){% if not loop.last %}, {% endif %}{% endfor %}{% endif %}.</p>
{% if evidently %}<p>Evidently data-drift page on a sample: <a href="{{ evidently }}">{{ evidently }}</a></p>{% endif %}
{% for name, image in images %}<h2>{{ name }}</h2>
<img alt="{{ name }}" src="data:image/png;base64,{{ image }}">
{% endfor %}
<h2>Measures</h2>
<table><tr><th>metric</th><th>feature</th><th>value</th><th>threshold</th><th>breached</th>
<th>reference rows</th><th>current rows</th><th class="l">compared</th><th class="l">detail</th></tr>
{% for m in measures %}<tr{% if m.breached %} class="fail"{% endif %}>
<td class="l">{{ m.metric }}</td><td class="l">{{ m.feature or "" }}</td><td>{{ fmt(m.value) }}</td>
<td>{{ fmt(m.threshold) }}</td><td>{{ m.breached }}</td><td>{{ m.reference_rows }}</td>
<td>{{ m.current_rows }}</td><td class="l">{{ m.compared }}</td><td class="l">{{ m.detail }}</td></tr>
{% endfor %}</table>
</body></html>
"""
)


# What rendering imports, seconds of it: the monitor stage imports them while Spark works.
SLOW_IMPORTS = ("evidently", "evidently.presets", "matplotlib.pyplot", "jinja2")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars_figure(measures: list[Measure], metric: str, title: str) -> Figure | None:
    """One horizontal bar per feature, red past the threshold, the threshold as a dashed line."""
    shown = [m for m in measures if m.metric == metric and m.value is not None]
    if not shown:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.4))
    colors = ["#e45756" if m.breached else "#4c78a8" for m in shown]
    axis.barh([str(m.feature) for m in shown], [m.value for m in shown], color=colors)
    threshold = shown[0].threshold
    if threshold is not None:
        axis.axvline(threshold, color="#222", linestyle="--", label=f"threshold {threshold:g}")
        axis.legend(fontsize=8, loc="lower right")
    axis.invert_yaxis()
    axis.set_title(title)
    axis.tick_params(labelsize=8)
    figure.tight_layout()
    return figure


def prediction_histogram(
    current: DataFrame, previous: DataFrame | None
) -> tuple[list[float], list[int], list[int]] | None:
    """Equal-width score bins over both frames' range, and the rows per bin of each (previous: [])."""
    from pyspark.sql import functions as F

    both = current.select(SCORE)
    if previous is not None:
        both = both.unionByName(previous.select(SCORE))
    low, high = both.agg(F.min(SCORE), F.max(SCORE)).first()  # type: ignore[misc]
    if low is None:
        return None
    width = (high - low) / HISTOGRAM_BINS or 1.0
    edges = [low + i * width for i in range(HISTOGRAM_BINS + 1)]
    reference = previous if previous is not None else current.limit(0)
    ref_counts, cur_counts = score_bin_counts(reference, current, edges=edges[1:-1])
    return edges, cur_counts, ref_counts if previous is not None else []


def prediction_figure(
    histogram: tuple[list[float], list[int], list[int]] | None,
) -> Figure | None:
    if histogram is None:
        return None
    edges, current, previous = histogram
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = edges[1] - edges[0]
    total = sum(current) or 1
    axis.bar(
        edges[:-1],
        [c / total for c in current],
        width=width,
        align="edge",
        color="#4c78a8",
        alpha=0.6,
        label="this publish",
    )
    if previous:
        total = sum(previous) or 1
        axis.step(
            edges,
            [p / total for p in previous] + [previous[-1] / total],
            where="post",
            color="#e45756",
            label="previous publish",
        )
    axis.set(xlabel="score", ylabel="share of keys", title="Predictions: this publish vs previous")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def realized_figure(history: list[Row], measures: list[Measure], run_date: date) -> Figure | None:
    """Each realized metric over run dates (the stored history, this run's values included)."""
    points: dict[str, dict[date, float]] = {}
    for row in history:
        if row.value is not None and row.run_date != run_date:
            points.setdefault(row.metric, {})[row.run_date] = row.value
    for m in measures:
        if m.metric.startswith("realized_") and m.value is not None:
            points.setdefault(m.metric, {})[run_date] = m.value
    if not points:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for metric, values in sorted(points.items()):
        days = sorted(values)
        axis.plot(days, [values[d] for d in days], marker="o", label=metric)
    thresholds = {m.metric: m.threshold for m in measures if m.threshold is not None}
    for metric in points:
        if metric in thresholds:
            axis.axhline(thresholds[metric], color="#888", linestyle="--", linewidth=1)
    dates = sorted({d for values in points.values() for d in values})
    axis.set_xticks(dates, [d.isoformat() for d in dates])
    axis.set_title("Realized performance per run date (labels that arrived later)")
    axis.legend(fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def render(
    *,
    title: str,
    measures: list[Measure],
    figures: dict[str, Figure | None],
    evidently: str | None,
) -> str:
    """The whole page as text: no external file, script or stylesheet."""
    import jinja2

    images = [(name, png_base64(f)) for name, f in figures.items() if f is not None]
    template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)
    return template.render(
        title=title,
        measures=measures,
        breaches=[m for m in measures if m.breached],
        images=images,
        evidently=evidently,
        fmt=_fmt,
    )


def bounded_sample(frame: DataFrame, rows: int, columns: list[str]) -> Any:
    """At most `rows` rows of `frame` as pandas, a seeded random choice."""
    from pyspark.sql import functions as F

    return frame.select(*columns).orderBy(F.rand(SEED)).limit(rows).toPandas()


def evidently_page(usecase: UseCase, frames: dict[str, DataFrame], path: Path) -> Path | None:
    """Evidently's data-drift preset on a bounded sample of the reference and the batch. Never
    fails the stage: the page is a view for people, the stored measures are what count."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        columns = usecase.source_features  # the columns of the clean rows (not built ones)
        rows = usecase.monitoring.report_sample_rows
        current = frames["current"]
        definition = DataDefinition(
            numerical_columns=usecase.numeric_features,
            categorical_columns=list(usecase.categorical_features),
        )
        datasets = [
            Dataset.from_pandas(bounded_sample(f, rows, columns), data_definition=definition)
            for f in (current, frames["reference"])
        ]
        snapshot = Report([DataDriftPreset()]).run(*datasets)
        write_text_atomically(path, snapshot.get_html_str(as_iframe=False))
    except Exception:
        log.exception("monitor: the Evidently page could not be written")
        return None
    return path


def figures(
    measures: list[Measure], frames: dict[str, DataFrame], history: list[Row], run_date: date
) -> dict[str, Figure | None]:
    """The page's plots, by section title (None: nothing to plot)."""
    return {
        "Feature drift: PSI per feature": bars_figure(
            measures, "feature_psi", "PSI: training rows vs this batch"
        ),
        "Feature drift: KS per numeric feature": bars_figure(
            measures, "feature_ks", "KS: training rows vs this batch"
        ),
        "Prediction drift": prediction_figure(
            prediction_histogram(frames["predictions"], frames.get("previous"))
        ),
        "Realized performance over time": realized_figure(history, measures, run_date),
    }
