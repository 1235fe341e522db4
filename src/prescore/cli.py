"""The `prescore` command: one subcommand per stage, `run` for the whole flow, `check` for a use
case's configuration, `lookup`, `serve`, `datagen`, `retention`, `reset`, and `promote` /
`rollback-model` to move a use case's @champion by hand."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from prescore.config import (
    ConfigError,
    Settings,
    UseCase,
    load_settings,
    load_usecase,
    load_usecases,
    suite_expectations,
    suite_path,
)
from prescore.flow import STAGES
from prescore.identifiers import check_usecase_name

log = logging.getLogger("prescore")
# What prescore creates (tables, snapshots, reports, MLflow files) gets no world access.
UMASK = 0o027


def _run_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"run date must be YYYY-MM-DD, got {value!r}") from exc


def _usecase(value: str) -> str:
    """A use-case name, refused before any path is built from it (`../../x` never reaches conf/)."""
    try:
        return check_usecase_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _usecase_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--usecase", required=True, type=_usecase, help="name of a file in conf/usecases/"
    )


def _stage_args(parser: argparse.ArgumentParser) -> None:
    _usecase_arg(parser)
    parser.add_argument(
        "--run-date", required=True, type=_run_date, help="logical date, YYYY-MM-DD"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prescore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        _stage_args(commands.add_parser(stage, help=f"run the {stage} stage for one run date"))
    commands.choices["publish"].add_argument(
        "--serve-older",
        action="store_true",
        help="serve the run date even if it is older than the one served (default: a backfill "
        "is published and logged, not served)",
    )
    _stage_args(commands.add_parser("run", help="run every stage in order, without Airflow"))
    check = commands.add_parser(
        "check",
        help="validate a use case and its expectation suite, without Spark and without state",
    )
    check.add_argument(
        "--usecase", type=_usecase, help="name of a file in conf/usecases/ (default: every file)"
    )
    _stage_args(
        commands.add_parser(
            "retention",
            help="delete and vacuum raw and quarantine run dates older than retention_days",
        )
    )
    reset = commands.add_parser(
        "reset",
        help="remove one use case's tables, snapshots and reports (MLflow is left alone)",
    )
    _usecase_arg(reset)
    reset.add_argument("--keep-raw", action="store_true", help="keep raw_<entity>")
    rollback = commands.add_parser(
        "rollback", help="serve the snapshot served before the current one again (logged)"
    )
    _usecase_arg(rollback)
    rollback.add_argument(
        "--to", type=_run_date, help="run date to go back to (default: one served snapshot back)"
    )
    bi_views = commands.add_parser("bi-views", help="DuckDB file of sql/delta/ views for BI tools")
    _usecase_arg(bi_views)
    bi_views.add_argument("--out", required=True, help="DuckDB file to write (replaced)")
    init = commands.add_parser(
        "init", help="write a use case and its starter suite from a sample of a data file"
    )
    _usecase_arg(init)
    init.add_argument(
        "--from",
        dest="source_file",
        required=True,
        type=Path,
        help="a CSV, Parquet or JSON-lines file",
    )
    init.add_argument("--label", help="the column to predict (default: one named label or target)")
    init.add_argument(
        "--keys",
        type=lambda text: [k.strip() for k in text.split(",") if k.strip()],
        help="the key columns, comma separated (default: the one unique column named *id)",
    )
    init.add_argument("--force", action="store_true", help="replace existing files")
    sql = commands.add_parser(
        "sql", help="query the use case's Delta tables with DuckDB, offline (views named as tables)"
    )
    _usecase_arg(sql)
    sql.add_argument(
        "-c",
        "--query",
        help="run this statement and print its rows as CSV (default: print the statements that "
        "set up a DuckDB session: the delta extension loaded by path, one view per table)",
    )
    promote = commands.add_parser("promote", help="make a registered model version @champion")
    _usecase_arg(promote)
    promote.add_argument("--version", required=True, help="registered model version number")
    promote.add_argument("--reason", default="promoted by hand", help="noted on the version")
    rollback_model = commands.add_parser(
        "rollback-model", help="make the previous @champion the champion again"
    )
    _usecase_arg(rollback_model)
    datagen = commands.add_parser("datagen", help="write seeded demo landing files")
    _stage_args(datagen)
    datagen.add_argument("--rows", type=int, default=100_000, help="rows; series for a time series")
    datagen.add_argument("--seed", type=int, default=42)
    datagen.add_argument(
        "--history-days", type=int, default=0, help="time series: also land the days before"
    )
    lookup = commands.add_parser("lookup", help="look up published scores by key")
    _usecase_arg(lookup)
    lookup.add_argument("keys", nargs="*", help="key values (composite keys: comma separated)")
    lookup.add_argument("--sample", type=int, default=0, help="also look up the first N keys")
    lookup.add_argument("--json", action="store_true", help="one JSON object per line")
    serve = commands.add_parser("serve", help="answer lookups over HTTP (conf: serve)")
    serve.add_argument("--host", help="address to listen on (default: serve.host, loopback)")
    serve.add_argument("--port", type=int, help="port to listen on (default: serve.port)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="listen on a non-loopback host without serve.auth (anyone reaching it reads scores)",
    )
    serve.add_argument(
        "--usecase",
        type=_usecase,
        action="append",
        dest="usecases",
        help="answer only this use case (repeatable; default: serve.usecases, else all)",
    )
    return parser


# ---------------------------------------------------------------- subcommands
#
# Each subcommand imports what it uses when it runs, on purpose: `prescore lookup` answers without
# loading Spark, MLflow or FastAPI, and `prescore serve` without Spark.


def _check(args: argparse.Namespace) -> None:
    """Load one use case (or every file of conf/usecases/) as the stages do and summarise it;
    a bad file raises its ConfigError (every bad file is printed first when checking all)."""
    settings = load_settings()
    if args.usecase:
        print("\n".join(usecase_summary(load_usecase(args.usecase, settings), settings)))
        return
    loaded = load_usecases(settings)
    for usecase in loaded.usecases.values():
        print("\n".join(usecase_summary(usecase, settings)))
    for error in loaded.errors.values():
        print(f"prescore check: error: {error}", file=sys.stderr)
    folder = settings.conf_dir / "usecases"
    checked = len(loaded.usecases) + len(loaded.errors)
    if not checked:
        raise ConfigError(f"{folder}: no use case file (<name>.yaml)")
    if loaded.errors:
        raise ConfigError(
            f"{len(loaded.errors)} of {checked} use case files in {folder} are invalid"
        )


def usecase_summary(usecase: UseCase, settings: Settings) -> list[str]:
    """What a valid use case declares, in a few lines: its columns' roles and its suite."""
    types = usecase.column_types
    categorical = [
        f"{c} ({len(levels)} levels)" if isinstance(levels, list) else f"{c} (levels learned)"
        for c, levels in usecase.categorical_features.items()
    ]
    event_time = (
        f"{usecase.event_time} (the latest row of a key is kept)"
        if usecase.event_time
        else "none (keys are unique: a duplicate key fails clean)"
    )
    lines = [
        f"{usecase.name}: ok ({settings.conf_dir / 'usecases' / usecase.name}.yaml)",
        f"  entity      {usecase.entity} (tables {usecase.raw_table}, {usecase.clean_table})",
        f"  keys        {', '.join(usecase.keys)}",
        f"  event_time  {event_time}",
        f"  label       {usecase.label} ({types[usecase.label]}), task {usecase.task}",
        f"  numeric     {', '.join(usecase.numeric_features) or '-'}",
        f"  categorical {', '.join(categorical) or '-'}",
    ]
    for name, derived in usecase.derive.items():
        lines.append(f"  derive      {name} ({derived.type}) = {derived.sql}")
    if usecase.time_series is not None:
        built = usecase.time_series.derived_features(usecase.label)
        lines.append(f"  built       {', '.join(built)} (from the history)")
    suite = suite_path(usecase, settings)
    expectations = suite_expectations(suite)
    lines.append(f"  suite       {suite} ({len(expectations)} expectations)")
    for severity in sorted({e.severity for e in expectations}):
        named = [
            f"{e.type}({','.join(e.columns)})" if e.columns and len(e.columns) < 4 else e.type
            for e in expectations
            if e.severity == severity
        ]
        lines.append(f"    {severity:<9} {len(named)}: {', '.join(named)}")
    return lines


def _lookup(args: argparse.Namespace) -> None:
    from prescore.serving.client import Scores

    scores = Scores(args.usecase)
    keys: list[object] = [tuple(k.split(",")) if "," in k else k for k in args.keys]
    keys += scores.sample_keys(args.sample) if args.sample else []
    # With --json, stdout holds JSON lines only: the header goes to stderr.
    header = f"# {args.usecase}: answered from the published snapshot {scores.snapshot}"
    print(header, file=sys.stderr if args.json else sys.stdout)
    for result in scores.get_many(keys):
        reasons = [r._asdict() for r in result.reasons] if result.reasons is not None else None
        if args.json:
            print(json.dumps(result._asdict() | {"reasons": reasons}, default=str))
            continue
        key = ",".join(map(str, result.key))
        score = "-" if result.score is None else f"{result.score:.4f}"
        model = f"{result.model_name} v{result.model_version}" if result.model_name else "-"
        why = ", ".join(
            f"{r['feature']}={r['value']} ({r['contribution']:+.2f})" for r in reasons or []
        )
        print(
            f"{key:>14}  score={score:>7}  {result.freshness:<8} model={model}  "
            f"scored_at={result.scored_at}" + (f"  why: {why}" if why else "")
        )


def _serve(args: argparse.Namespace) -> None:
    from prescore.serving.http import serve

    settings = load_settings()
    if args.usecases:
        only = settings.serve.model_copy(update={"usecases": args.usecases})
        settings = settings.model_copy(update={"serve": only})
    serve(
        settings,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        insecure=args.insecure,
    )


def _datagen(args: argparse.Namespace) -> None:
    from prescore.demo.datagen import write_landing

    settings = load_settings()
    usecase = load_usecase(args.usecase, settings)
    folder = write_landing(
        settings, usecase, args.run_date, args.rows, args.seed, history_days=args.history_days
    )
    unit = f"{usecase.entity} rows" if usecase.time_series is None else "series"
    history = f", {args.history_days} days of history" if args.history_days else ""
    print(f"datagen: {args.rows} {unit}{history} (plus injected defects) -> {folder}")


def _bi_views(args: argparse.Namespace) -> None:
    from prescore.serving import bi

    settings = load_settings()
    made = bi.build_bi_views(settings, load_usecase(args.usecase, settings), Path(args.out))
    print(json.dumps({**made, "file": args.out, "first_run": bi.load_statement(settings)}))


def _init(args: argparse.Namespace) -> None:
    from prescore.data.scaffold import scaffold

    settings = load_settings()
    written = scaffold(
        settings,
        args.usecase,
        args.source_file,
        label=args.label,
        keys=args.keys,
        force=args.force,
    )
    print(json.dumps(written, indent=2))
    landing = settings.landing_dir / args.usecase / "run_date=YYYY-MM-DD"
    print(
        f"next: review {written['usecase']} (lines marked REVIEW), then\n"
        f"  prescore check --usecase {args.usecase}\n"
        f"  mkdir -p {landing} && cp {args.source_file} {landing}/\n"
        f"  prescore run --usecase {args.usecase} --run-date YYYY-MM-DD",
        file=sys.stderr,
    )


def _sql(args: argparse.Namespace) -> None:
    import csv

    import duckdb

    from prescore.platform import tables
    from prescore.serving import bi

    settings = load_settings()
    preamble = bi.sql_preamble(settings, load_usecase(args.usecase, settings))
    if not args.query:
        print(preamble)
        return
    with tables.duckdb_reading_delta(settings) as con:  # with the store's secret, if on one
        con.execute(preamble)
        try:
            result = con.execute(args.query)
        except duckdb.Error as exc:
            raise ValueError(f"query failed: {exc}") from None
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([column[0] for column in result.description or []])
        writer.writerows(result.fetchall())


def _move_champion(args: argparse.Namespace) -> None:
    """`promote` or `rollback-model`: move @champion, keeping the champion history."""
    from prescore.platform import registry

    settings = load_settings()
    usecase = load_usecase(args.usecase, settings)
    when = datetime.now(UTC).isoformat()
    before = (
        registry.resolve_alias(settings, usecase).version
        if registry.has_alias(settings, usecase, registry.CHAMPION)
        else None
    )
    if args.command == "promote":
        ref = registry.model_version(settings, usecase, args.version)
        registry.promote(settings, ref, reason=args.reason, when=when)
    else:
        ref = registry.rollback_champion(settings, usecase, when=when)
    print(json.dumps({"model": ref.name, "champion": ref.version, "previous": str(before)}))


def _rollback(args: argparse.Namespace) -> None:
    from prescore.platform.spark import get_spark
    from prescore.stages.publish import rollback

    settings = load_settings()
    usecase = load_usecase(args.usecase, settings)
    print(json.dumps(rollback(get_spark(settings), settings, usecase, args.to), default=str))


def _retention(args: argparse.Namespace) -> None:
    from prescore.context import RunContext
    from prescore.stages import retention

    ctx = RunContext.create(args.usecase, args.run_date, load_settings())
    print(json.dumps(retention.run(ctx), indent=2))


def _reset(args: argparse.Namespace) -> None:
    from prescore.platform.spark import get_spark
    from prescore.serving.reset import reset_usecase

    settings = load_settings()
    usecase = load_usecase(args.usecase, settings)
    removed = reset_usecase(
        settings, usecase, keep_raw=args.keep_raw, spark=lambda: get_spark(settings)
    )
    print(json.dumps(removed, indent=2))


def _stages(args: argparse.Namespace) -> None:
    """A stage by name, or `run`: every stage in order."""
    from prescore.context import RunContext
    from prescore.flow import run_flow, run_stage

    ctx = RunContext.create(args.usecase, args.run_date, load_settings())
    options = {"serve_older": True} if getattr(args, "serve_older", False) else {}
    summary = run_flow(ctx) if args.command == "run" else run_stage(args.command, ctx, **options)
    print(json.dumps(summary, default=str, indent=2))


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    **{stage: _stages for stage in STAGES},
    "run": _stages,
    "check": _check,
    "retention": _retention,
    "reset": _reset,
    "rollback": _rollback,
    "bi-views": _bi_views,
    "sql": _sql,
    "init": _init,
    "promote": _move_champion,
    "rollback-model": _move_champion,
    "datagen": _datagen,
    "lookup": _lookup,
    "serve": _serve,
}


def dispatch(args: argparse.Namespace) -> None:
    COMMANDS[args.command](args)


def restrict_umask() -> None:
    """Add UMASK to the process umask (never loosening a stricter one): files and folders made
    from here on, and by a JVM started from here, have no world access."""
    os.umask(os.umask(UMASK) | UMASK)


def main(argv: Sequence[str] | None = None) -> int:
    restrict_umask()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        dispatch(args)
    except (ValueError, LookupError, OSError, RuntimeError) as exc:
        # Expected failures (bad config, bad data, failed checks) name what is at fault; no traceback.
        log.debug("failure", exc_info=True)
        print(f"prescore {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_job(stage: str) -> None:
    """Entry of jobs/<stage>.py under spark-submit: `--usecase U --run-date D`."""
    sys.exit(main([stage, *sys.argv[1:]]))
