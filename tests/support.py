"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import http.server
import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import uvicorn
from bench.servers import free_port
from fastapi import FastAPI

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import registry
from prescore.serving import snapshot
from prescore.storage import state_location
from prescore.training.package import Preprocessing

# The session's whole-flow run (the `flow` fixture in conftest.py): its run date and its log file,
# under the flow's state folder.
FLOW_RUN_DATE = date(2026, 11, 1)
FLOW_LOG = "flow.log"


def copy_of_flow(flow: tuple[RunContext, Any], folder: Path, *, days_later: int = 0) -> RunContext:
    """The session flow's state copied to `folder`, and a context on the copy `days_later` days
    after the flow's run date. Its tables, models and snapshots are the copy's own; MLflow's
    experiments keep the artifact folder they were made with, so a run on the copy logs its
    artifacts under the flow's folder, each in a folder of its own run id."""
    ctx, _ = flow
    shutil.copytree(ctx.settings.state_dir, folder, symlinks=True)
    settings = ctx.settings.model_copy(update={"state_dir": folder})
    return RunContext(settings, ctx.usecase, ctx.run_date + timedelta(days=days_later), ctx.spark)


def settings_on_store(settings: Settings, object_store: str, folder: Path) -> Settings:
    """`settings` with the state under a new prefix (the folder's name) of the object store;
    MLflow's database and the host's copy of the serving snapshots stay local, in `folder`."""
    prefix = state_location(f"{object_store}/{folder.name}", root=folder)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow = settings.mlflow.model_copy(update={"tracking_uri": tracking})
    update = {
        "state_dir": prefix,
        "mlflow": mlflow,
        "serving_cache_dir": folder / "serving-cache",
    }
    return settings.model_copy(update=update)


@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """uvicorn on a free loopback port in a thread; stopped through should_exit on the way out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def logged_to(path: Path) -> Iterator[None]:
    """Every Python log record, at every level, also written to `path` while inside."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(
            {
                "path": self.path,
                "content_type": self.headers["Content-Type"],
                "body": json.loads(self.rfile.read(length)),
            }
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass


@contextmanager
def webhook_server(path: str = "/hooks/prescore") -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server on 127.0.0.1 recording every POST (path, content type, JSON body):
    (its URL, the list it appends to)."""
    received: list[dict[str, Any]] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def point_current_to(settings: Settings, usecase: UseCase, built: Path) -> None:
    """Serve snapshot `built` at once, as publish does without its checks and log."""
    snapshot.move_pointer(snapshot.stage_pointer(settings, usecase, built.name))


SNAPSHOT_RUN_DATE = date(2026, 11, 5)
SCORED_AT = datetime.now().replace(microsecond=0) - timedelta(hours=1)  # fresh while tests run


def publish_snapshot(
    settings: Settings, usecase: UseCase, rows: list[tuple[Any, ...]], version: int
) -> Path:
    """Write predictions as Parquet, build snapshot v<version> from them and point current at it.

    rows: one (key values..., score) tuple per key; model_version is str(version).
    """
    n = len(rows)
    columns: dict[str, Any] = {
        k: [r[i] for r in rows] for i, k in enumerate(usecase.published_keys)
    }
    table = pa.table(
        {
            **columns,
            "score": pa.array([r[-1] for r in rows], pa.float64()),
            "model_name": [f"prescore-{usecase.name}"] * n,
            "model_version": [str(version)] * n,
            "model_run_id": ["run"] * n,
            "features_version": pa.array([0] * n, pa.int64()),
            "scored_at": pa.array([SCORED_AT] * n, pa.timestamp("us")),
            "valid_until": pa.array([SCORED_AT + timedelta(days=7)] * n, pa.timestamp("us")),
        }
    )
    parquet = settings.state_dir / f"{usecase.name}-v{version}.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, parquet)
    built, _ = snapshot.build_usecase_snapshot(
        settings, usecase, SNAPSHOT_RUN_DATE, version, [str(parquet)]
    )
    point_current_to(settings, usecase, built)
    return built


def register_package(
    settings: Settings,
    usecase: UseCase,
    booster: Any,
    *,
    alias: str,
    preprocessing: Preprocessing | None = None,
) -> registry.ModelRef:
    """Register `booster` as a model package of `usecase` under `alias`, as training does (by
    default every feature numeric, as is: no fill, clip or levels)."""
    import pandas as pd

    from prescore.training import pyfunc
    from prescore.training.package import FeatureStep, Package

    steps = preprocessing or Preprocessing([FeatureStep(f, "numeric") for f in usecase.features])
    package = Package(steps, booster)
    example = pd.DataFrame({f: [0.5] for f in package.features})
    return pyfunc.register_package(settings, usecase, package, alias=alias, input_example=example)


@contextmanager
def mlflow_model_server(model_uri: str, settings: Settings) -> Iterator[httpx.Client]:
    """`mlflow models serve` of a registered model, as a deployment starts it (the local
    environment), on a free loopback port; stopped on the way out."""
    import os
    import subprocess
    import sys

    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # As from an activated environment: mlflow runs `uvicorn` from PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "PATH": path}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    assert server.stderr is not None
                    why = server.stderr.read().decode(errors="replace")[-3000:]
                    raise AssertionError(f"mlflow models serve exited: {why}")
                assert time.monotonic() < deadline, "mlflow models serve did not start in 120 s"
                try:
                    if http.get("/ping").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            yield http
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
