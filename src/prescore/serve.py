"""HTTP lookups: a FastAPI app answering every key from one `Scores` client per use case.

    GET  /v1/{usecase}/scores/{key}    one key; a composite key as comma-separated values
    POST /v1/{usecase}/scores:batch    {"keys": [...]}: answers in request order
    GET  /healthz, /readyz, /metrics   liveness, a published snapshot per use case, Prometheus
    GET  /docs                         OpenAPI

Endpoints are `async def` and call the client on the event loop: a lookup is tens of microseconds
of in-memory work, less than the hop to the threadpool a plain `def` endpoint takes (which about
doubled the app's time per request when measured).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, StrictInt, StrictStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prescore.config import Settings, UseCase, list_usecases, load_usecase
from prescore.lookup import Score, Scores, SnapshotNotFoundError

log = logging.getLogger("prescore.serve")

KeyPart = StrictStr | StrictInt
# serving.snapshot_path names every snapshot <run_date>-v<predictions version>.duckdb.
SNAPSHOT_NAME = re.compile(r"(?P<run_date>\d{4}-\d{2}-\d{2})-v(?P<version>\d+)\.duckdb")
PATH_PARAMETERS = [
    {"name": "usecase", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "the key; a composite key as comma-separated values in key-column order",
    },
]
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class BatchRequest(BaseModel):
    keys: list[KeyPart | list[KeyPart]]


class ScoreAnswer(BaseModel):
    """One key's published score (documentation of the JSON answers; not used to build them)."""

    usecase: str
    key: dict[str, str | int]
    score: float | None
    freshness: str
    model_name: str | None
    model_version: str | None
    scored_at: datetime | None
    valid_until: datetime | None


class BatchAnswer(BaseModel):
    scores: list[ScoreAnswer]


def answers(usecase: UseCase, scores: Sequence[Score]) -> list[dict[str, Any]]:
    """The JSON answer of each score."""
    name, keys, iso = usecase.name, usecase.published_keys, _iso
    return [
        {
            "usecase": name,
            "key": dict(zip(keys, score.key, strict=True)),
            "score": score.score,
            "freshness": score.freshness,
            "model_name": score.model_name,
            "model_version": score.model_version,
            "scored_at": iso(score.scored_at),
            "valid_until": iso(score.valid_until),
        }
        for score in scores
    ]


@functools.lru_cache(maxsize=64)
def _iso(moment: datetime | None) -> str | None:
    """ISO text of a time, remembered: the rows of a snapshot share one scored_at and one
    valid_until, and isoformat was a fifth of a 1000-key batch's time in the app."""
    return None if moment is None else moment.isoformat()


def snapshot_problem(client: Scores) -> str | None:
    """Why this use case cannot answer yet (nothing published, file unreadable), or None."""
    try:
        path = client.snapshot
    except Exception as exc:  # a probe reports any failure to open instead of failing itself
        return str(exc)
    return None if os.access(path, os.R_OK) else f"{path} is not readable"


class SnapshotCollector(Collector):
    """At scrape time, per use case: the snapshot served (run date, version) and its age."""

    def __init__(self, clients: dict[str, Scores]) -> None:
        self.clients = clients

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "prescore_snapshot_info",
            "The snapshot each use case answers from (1 per use case)",
            labels=["usecase", "run_date", "version"],
        )
        age = GaugeMetricFamily(
            "prescore_snapshot_age_seconds",
            "Seconds since the served snapshot file was written by publish",
            labels=["usecase"],
        )
        for name, client in self.clients.items():
            try:
                path = client.snapshot
                written = path.stat().st_mtime
            except Exception:  # nothing served yet: /readyz says why; no series until then
                continue
            parsed = SNAPSHOT_NAME.fullmatch(path.name)
            run_date, version = parsed.groups() if parsed else ("", "")
            info.add_metric([name, run_date, version], 1)
            age.add_metric([name], time.time() - written)
        yield info
        yield age


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the Request and returns a Response: FastAPI's parameter
    solving, skipped here, was 40% of the app's time per single-key lookup (measured). The
    endpoint reads its path parameters from the request; openapi_extra documents them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


class RequestMetrics:
    """ASGI middleware: request counts by route template and status, and a latency histogram."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "prescore_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "prescore_http_request_duration_seconds",
            "Time from request to the end of the response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the error handler answers if the app raises

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The template, not the path: one series per route whatever the keys asked.
            route = getattr(scope.get("route"), "path", "unmatched")
            latency, requests = self._series(scope["method"], route, status)
            latency.observe(time.perf_counter() - start)
            requests.inc()

    def _series(self, method: str, route: str, status: int) -> tuple[Histogram, Counter]:
        """The labelled series of a request, kept: looking them up costs as much as a lookup."""
        labels = (method, route, status)
        if labels not in self._children:
            self._children[labels] = (
                self.latency.labels(route),
                self.requests.labels(method, route, str(status)),
            )
        return self._children[labels]


class InternalErrorsAsJson:
    """ASGI middleware: an unexpected exception is logged with its traceback and answered with a
    short JSON 500, nothing of the internals.

    Not Starlette's `exception_handler(Exception)`: that one re-raises after answering, and uvicorn
    then closes the keep-alive connection under the caller's next request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"][:200])
            if started:
                raise  # too late for another answer: the server drops the connection
            await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


def create_app(settings: Settings, usecases: Sequence[UseCase] | None = None) -> FastAPI:
    """The app for `usecases` (default: serve.usecases, else every file in conf/usecases/), one
    client each."""
    if usecases is None:
        names = settings.serve.usecases or list_usecases(settings)
        usecases = [load_usecase(name, settings) for name in names]
    clients = {usecase.name: Scores(usecase, settings) for usecase in usecases}
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(clients))
    app = FastAPI(title="prescore", summary="Published scores by key", version="1")
    app.add_middleware(InternalErrorsAsJson)
    app.add_middleware(RequestMetrics, registry=registry)  # outermost: sees the 500s too
    _add_error_handlers(app)
    _add_lookup_routes(app, clients, settings.serve.max_batch)
    _add_probe_routes(app, clients, registry)
    return app


def _add_lookup_routes(app: FastAPI, clients: dict[str, Scores], max_batch: int) -> None:
    def client_of(usecase: str) -> Scores:
        if usecase not in clients:
            raise HTTPException(
                404, f"unknown use case {usecase[:100]!r}; known: {sorted(clients)}"
            )
        return clients[usecase]

    async def get_score(request: Request) -> JSONResponse:
        usecase, key = request.path_params["usecase"], request.path_params["key"]
        client = client_of(usecase)
        try:
            score = client.get(key.split(","))
        except SnapshotNotFoundError:
            raise HTTPException(503, f"nothing published for use case {usecase!r} yet") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        status = 404 if score.freshness == "missing" else 200
        (body,) = answers(client.usecase, [score])
        return JSONResponse(body, status_code=status)

    app.router.add_api_route(
        "/v1/{usecase}/scores/{key}",
        get_score,
        route_class_override=RequestOnlyRoute,
        response_model=None,
        responses={200: {"model": ScoreAnswer}, 404: {"model": ScoreAnswer}},
        summary="One key's score; a composite key as comma-separated values in key-column order",
        openapi_extra={"parameters": PATH_PARAMETERS},
    )

    @app.post(
        "/v1/{usecase}/scores:batch",
        response_model=None,
        responses={200: {"model": BatchAnswer}},
        summary="Scores of many keys, in request order; unknown keys have freshness 'missing'",
    )
    async def get_scores(usecase: str, request: BatchRequest) -> JSONResponse:
        client = client_of(usecase)
        if len(request.keys) > max_batch:
            raise HTTPException(413, f"{len(request.keys)} keys; at most {max_batch} per batch")
        try:
            scores = client.get_many(request.keys)
        except SnapshotNotFoundError:
            raise HTTPException(503, f"nothing published for use case {usecase!r} yet") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse({"scores": answers(client.usecase, scores)})


def _add_probe_routes(
    app: FastAPI, clients: dict[str, Scores], registry: CollectorRegistry
) -> None:
    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Every use case has a readable published snapshot")
    async def readyz() -> JSONResponse:
        problems = {name: snapshot_problem(client) for name, client in clients.items()}
        unready = {name: problem for name, problem in problems.items() if problem}
        if unready:
            return JSONResponse({"status": "not ready", "unready": unready}, status_code=503)
        snapshots = {name: client.snapshot.name for name, client in clients.items()}
        return JSONResponse({"status": "ready", "snapshots": snapshots})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes every input back; a short reason per field is enough.
        reasons = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:10]
        ]
        return JSONResponse({"detail": "; ".join(reasons)}, status_code=422)


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = False,
) -> None:
    """Run the app under uvicorn until SIGINT/SIGTERM (uvloop and httptools when installed)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=host or settings.serve.host,
        port=settings.serve.port if port is None else port,
        access_log=access_log,
    )
