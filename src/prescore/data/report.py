"""The data report of one batch: a self-contained HTML page (plots as base64 PNG) from its profile.

Sections: the batch and its validation verdicts, a table of per-column statistics, the
distributions of numeric columns, the top values of categoricals, the correlation heatmap of
numeric features and the label, and the null rate of each column over the profiled run dates.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from typing import TYPE_CHECKING, Any

from prescore.data.validation import failed_counts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from prescore.data.profile import ColumnProfile, ProfileHistory
    from prescore.data.validation import ExpectationOutcome

GRID_COLUMNS = 4
# The head of every prescore report page (this one and the monitoring report): no external file.
PAGE_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td.l { text-align: left; }
tr.fail td { background: #fde2e2; } img { max-width: 100%; }
</style></head><body>
"""
TEMPLATE = (
    PAGE_HEAD
    + """<h1>{{ title }}</h1>
<p>{{ rows }} rows, {{ profiles|length }} columns. Validation: {{ evaluated }} expectations,
{{ failed_error }} failed error, {{ failed_warn }} failed warn.</p>
{% if outcomes %}<h2>Expectations</h2>
<table><tr><th>expectation</th><th>column</th><th>severity</th><th>success</th><th>unexpected</th><th>observed</th></tr>
{% for o in outcomes %}<tr class="{{ '' if o.success else 'fail' }}"><td class="l">{{ o.expectation_type }}</td>
<td class="l">{{ o.column or '' }}</td><td class="l">{{ o.severity }}</td><td>{{ o.success }}</td>
<td>{{ o.unexpected_count if o.unexpected_count is not none else '' }}</td><td class="l">{{ (o.observed_value or '')[:80] }}</td></tr>
{% endfor %}</table>{% endif %}
<h2>Columns</h2>
<table><tr><th>column</th><th>type</th><th>role</th><th>nulls</th><th>null %</th><th>distinct ~</th>
<th>min</th><th>max</th><th>mean</th><th>stddev</th><th>p50</th></tr>
{% for p in profiles %}<tr><td class="l">{{ p.column }}</td><td class="l">{{ p.dtype }}</td><td class="l">{{ p.role }}</td>
<td>{{ p.nulls }}</td><td>{{ '%.2f'|format(100 * p.null_rate) }}</td><td>{{ p.distinct_approx }}</td>
<td>{{ p.min or '' }}</td><td>{{ p.max or '' }}</td><td>{{ fmt(p.mean) }}</td><td>{{ fmt(p.stddev) }}</td>
<td>{{ fmt(median(p)) }}</td></tr>
{% endfor %}</table>
{% for heading, image in images %}<h2>{{ heading }}</h2>
<img alt="{{ heading }}" src="data:image/png;base64,{{ image }}">
{% endfor %}
</body></html>
"""
)


def png_base64(figure: Figure) -> str:
    """The figure as PNG, base64 encoded for an <img src="data:..."> (and closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(count: int, title: str) -> tuple[Figure, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(GRID_COLUMNS, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), squeeze=False)
    figure.suptitle(title)
    flat = list(axes.flat)
    for spare in flat[count:]:
        spare.set_visible(False)
    return figure, flat[:count]


def distributions_figure(profiles: list[ColumnProfile]) -> Figure | None:
    """One histogram per binned numeric column, with its median marked."""
    binned = [p for p in profiles if p.histogram]
    if not binned:
        return None
    figure, axes = _grid(len(binned), "Distributions (numeric columns)")
    for axis, profile in zip(axes, binned, strict=True):
        histogram = profile.loaded("histogram")
        edges, counts = histogram["edges"], histogram["counts"]
        widths = [b - a for a, b in itertools.pairwise(edges)]
        axis.bar(
            edges[:-1], counts, width=[w or 1.0 for w in widths], align="edge", color="#4c78a8"
        )
        middle = median(profile)
        if middle is not None:
            axis.axvline(middle, color="#e45756", linewidth=1)
        axis.set_title(f"{profile.column} (nulls {100 * profile.null_rate:.1f}%)", fontsize=9)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def top_values_figure(profiles: list[ColumnProfile]) -> Figure | None:
    """One horizontal bar chart of the most frequent values per categorical column."""
    counted = [p for p in profiles if p.top_values]
    if not counted:
        return None
    figure, axes = _grid(len(counted), "Top values (categorical columns and label)")
    for axis, profile in zip(axes, counted, strict=True):
        pairs = profile.loaded("top_values")[::-1]
        axis.barh([str(v) for v, _ in pairs], [n for _, n in pairs], color="#72b7b2")
        axis.set_title(f"{profile.column} (nulls {100 * profile.null_rate:.1f}%)", fontsize=9)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def correlation_figure(profiles: list[ColumnProfile]) -> Figure | None:
    """Heatmap of Pearson r between numeric features and the label, values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    correlated = [p for p in profiles if p.correlations]
    if len(correlated) < 2:
        return None
    names = [p.column for p in correlated]
    matrix = [
        [1.0 if a == b.column else b.loaded("correlations").get(a) for a in names]
        for b in correlated
    ]
    values = [[math.nan if v is None else v for v in row] for row in matrix]
    size = 1.0 + 0.6 * len(names)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if not math.isnan(value):
                axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axis, shrink=0.8, label="Pearson r")
    axis.set_title("Correlation (numeric features and label)")
    figure.tight_layout()
    return figure


def null_rates_figure(history: ProfileHistory, *, limit: int = 10) -> Figure | None:
    """Null rate over run dates of the columns that ever had nulls (the `limit` worst)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = sorted(
        ((max(rates.values()), column) for column, rates in history.null_rates.items()),
        reverse=True,
    )
    columns = [c for peak, c in worst if peak > 0][:limit]
    if not columns:
        return None
    figure, axis = plt.subplots(figsize=(8, 3.5))
    for column in columns:
        points = sorted(history.null_rates[column].items())
        axis.plot([d for d, _ in points], [100 * r for _, r in points], marker="o", label=column)
    dates = sorted({d for c in columns for d in history.null_rates[c]})
    axis.set_xticks(dates, [d.isoformat() for d in dates])
    axis.set_ylim(bottom=0)
    axis.set_ylabel("null %")
    axis.set_title("Null rate per run date")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def median(profile: ColumnProfile) -> float | None:
    quantiles = profile.loaded("quantiles")
    return None if not quantiles else quantiles.get("0.5")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def render_report(
    *,
    title: str,
    profiles: list[ColumnProfile],
    outcomes: list[ExpectationOutcome],
    history: ProfileHistory,
) -> str:
    """The whole HTML page as text: no external file, script or stylesheet."""
    import jinja2

    figures = {
        "Distributions": distributions_figure(profiles),
        "Top values": top_values_figure(profiles),
        "Correlation": correlation_figure(profiles),
        "Null rate over time": null_rates_figure(history),
    }
    images = [(name, png_base64(f)) for name, f in figures.items() if f is not None]
    environment = jinja2.Environment(autoescape=True)
    template = environment.from_string(TEMPLATE)
    failed = failed_counts(outcomes)
    return template.render(
        title=title,
        rows=profiles[0].rows if profiles else 0,
        profiles=profiles,
        outcomes=outcomes,
        evaluated=len(outcomes),
        failed_error=failed["error"],
        failed_warn=failed["warn"],
        images=images,
        fmt=_fmt,
        median=median,
    )
