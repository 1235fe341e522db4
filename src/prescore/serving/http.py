"""HTTP lookups: a FastAPI app answering every key from one `Scores` client per use case.

    GET  /v1/{usecase}/scores/{key}    one key; a composite key as comma-separated values
    POST /v1/{usecase}/scores:batch    {"keys": [...]}: answers in request order; with
                                       "features" (one object per key), a key not precomputed
                                       is computed from its features
    POST /v1/{usecase}/scores:compute  {"rows": [{feature: value, ...}]}: computed now by the
                                       @champion's model package (serving.compute)
    GET  /healthz                      liveness
    GET  /readyz, /readyz/{usecase}    readiness of every use case, or of one
    GET  /metrics, /docs               Prometheus, OpenAPI

HEAD answers wherever GET does. A body over serve.max_body_bytes is refused (413) before it is
parsed; with serve.auth, every route but /healthz and /readyz needs a bearer token. No answer
names a filesystem path or lists the use cases.

Endpoints are `async def` and call the client on the event loop: a lookup is tens of microseconds
of in-memory work, less than the hop to the threadpool a plain `def` endpoint takes (which about
doubled the app's time per request when measured).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
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
from pydantic import BaseModel, StrictInt, StrictStr, WithJsonSchema
from pydantic_core import PydanticSerializationError, to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic needs this one under Python 3.11

from prescore.config import (
    ConfigError,
    ServeAuth,
    Settings,
    UseCase,
    list_usecases,
    load_usecases,
)
from prescore.platform.registry import ModelNotFoundError
from prescore.serving import compute
from prescore.serving.client import (
    NothingPublishedError,
    Score,
    Scores,
    SnapshotNotFoundError,
    SnapshotUnreadableError,
)
from prescore.serving.follow import StoreFollower

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
# An absolute path in a message: a slash not inside a word, then its parts; kept: the last part.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(?:/[^\s'\"/:;,()\[\]]+)+")
OPEN_PATHS = ("/healthz", "/readyz")  # answered without a token: probes of the load balancer


class BatchRequest(BaseModel):
    keys: list[KeyPart | list[KeyPart]]
    features: list[dict[str, Any]] | None = None  # for each key, in order: scored if missed


class ComputeRequest(BaseModel):
    rows: list[dict[str, Any]]  # feature values by name (null: missing); key columns optional


# An ISO 8601 time as the answers carry it (text, made once per snapshot by _iso), documented
# in the OpenAPI schema as a date-time.
IsoTime = Annotated[
    str | None,
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
]


class ReasonAnswer(TypedDict):
    feature: str
    contribution: float  # to the margin: log-odds for a binary label
    value: str | None  # as the model saw it; None when missing


class ScoreAnswer(TypedDict):
    """One key's published score: the JSON answer, and its schema in the OpenAPI docs.

    A TypedDict, not a pydantic model: the answers are plain dicts built without validation (a
    1000-key batch builds 1000 of them), and mypy checks each one against these fields.
    """

    usecase: str
    key: dict[str, str | int] | None  # None: a computed row sent without its key columns
    score: float | None
    freshness: str | None  # None for a computed score
    source: str | None  # precomputed | computed; None for a missing key
    model_name: str | None
    model_version: str | None
    scored_at: IsoTime
    valid_until: IsoTime
    reasons: list[ReasonAnswer] | None  # with score.explain: the top features, largest first


class BatchAnswer(TypedDict):
    scores: list[ScoreAnswer]


def answers(usecase: UseCase, scores: Sequence[Score]) -> list[ScoreAnswer]:
    """The JSON answer of each score."""
    name, keys, iso = usecase.name, usecase.published_keys, _iso
    return [
        {
            "usecase": name,
            "key": dict(zip(keys, score.key, strict=True)) if score.key else None,
            "score": score.score,
            "freshness": score.freshness,
            "source": score.source,
            "model_name": score.model_name,
            "model_version": score.model_version,
            "scored_at": iso(score.scored_at),
            "valid_until": iso(score.valid_until),
            "reasons": None if score.reasons is None else [r._asdict() for r in score.reasons],
        }
        for score in scores
    ]


@functools.lru_cache(maxsize=64)
def _iso(moment: datetime | None) -> str | None:
    """ISO text of a time, remembered: the rows of a snapshot share one scored_at and one
    valid_until, so a 1000-key batch formats two times, not 2000."""
    return None if moment is None else moment.isoformat()


def without_paths(text: str) -> str:
    """`text` with each absolute filesystem path cut to its file name: answers never show where
    the state folder is."""
    return _ABSOLUTE_PATH.sub(lambda path: path[0].rsplit("/", 1)[-1], text)


def readiness(client: Scores) -> dict[str, Any]:
    """{"ready": true, "snapshot": <file name>}, or {"ready": false, "reason": ...} when the use
    case cannot answer (nothing published, a file missing, unreadable or changed since opened)."""
    try:
        snapshot = client.check_served()
    except Exception as exc:  # a probe reports any failure to open instead of failing itself
        return {"ready": False, "reason": without_paths(str(exc))}
    return {"ready": True, "snapshot": snapshot}


class ScoresJson(JSONResponse):
    """JSON rendered by pydantic-core's encoder: the answers of a 1,000-key batch, with their
    reasons, took the standard library's a quarter of the request (bench/)."""

    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")


def json_answer(content: Any, status_code: int = 200) -> JSONResponse:
    """A JSON response, or 422 when a key echoed back in it is not valid text (a lone surrogate,
    which JSON can carry in but UTF-8 cannot carry out)."""
    try:
        return ScoresJson(content, status_code=status_code)
    except PydanticSerializationError:
        pass  # not UTF-8: the standard library's encoder names the character
    try:
        return JSONResponse(content, status_code=status_code)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise HTTPException(422, f"a key holds {bad!r}, which is not valid text") from None


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


class StoreSyncCollector(Collector):
    """At scrape time, per use case: seconds since this host last synced with the store."""

    def __init__(self, follower: StoreFollower) -> None:
        self.follower = follower

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "prescore_store_sync_age_seconds",
            "Seconds since this host last read the use case's pointer on the object store",
            labels=["usecase"],
        )
        for usecase in self.follower.usecases:
            seconds = self.follower.sync_age(usecase.name)
            if seconds is not None:
                age.add_metric([usecase.name], seconds)
        yield age


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the Request and returns a Response, skipping FastAPI's
    parameter solving, the larger part of a single-key lookup's time in the app (bench/README.md,
    lookup). The endpoint reads its path parameters from the request; openapi_extra documents
    them."""

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


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 before any of it is parsed:
    at once when its Content-Length says so, else (chunked) as soon as the bytes received pass the
    limit; a chunked body within it is read whole, then handed on."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:  # the server hands on no more than it declares
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # no body
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body over {self.max_bytes} bytes"
        response = JSONResponse(
            {"detail": detail}, status_code=413, headers={"connection": "close"}
        )
        await response(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: HEAD answers as GET would, headers only (FastAPI routes take GET alone)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(as_get, receive, send_headers_only)
        finally:
            if "route" in as_get:  # for RequestMetrics: the route template, as for a GET
                scope["route"] = as_get["route"]


class BearerAuth:
    """ASGI middleware: every route but the probes (/healthz, /readyz...) needs
    `Authorization: Bearer <token>` with one of `tokens`, compared in constant time; else 401.

    /metrics needs it too: it names every use case and its traffic, and Prometheus sends a bearer
    token from its scrape config (`authorization: {credentials_file: ...}`)."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith("/readyz/"):
            await self.app(scope, receive, send)
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and self._known(token.strip()):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer error="invalid_token"' if token else "Bearer"
        response = JSONResponse(
            {"detail": "a valid bearer token is required"},
            status_code=401,
            headers={"www-authenticate": challenge},
        )
        await response(scope, receive, send)

    def _known(self, token: bytes) -> bool:
        """Whether `token` is one of the tokens, comparing with every one: no early exit."""
        found = False
        for known in self.tokens:
            found |= hmac.compare_digest(known, token)
        return found


def api_tokens(auth: ServeAuth) -> list[str]:
    """The tokens in the environment variable auth.tokens_env (comma-separated), never logged."""
    tokens = [t.strip() for t in os.environ.get(auth.tokens_env, "").split(",") if t.strip()]
    if not tokens:
        raise ValueError(
            f"serve.auth is on but the environment variable {auth.tokens_env} holds no token"
        )
    return tokens


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or localhost); a name that may resolve elsewhere is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def servable_usecases(settings: Settings) -> list[UseCase]:
    """serve.usecases, else every use case in conf/usecases/. A file that does not load is
    logged and left out, so one bad file never takes the others' lookups down; ConfigError when
    nothing asked for loads."""
    loaded = load_usecases(settings)
    wanted = settings.serve.usecases or list_usecases(settings)
    for path, error in loaded.errors.items():
        if path.stem in wanted:
            log.error("not serving %r: %s", path.stem, error)
    unknown = [n for n in wanted if n not in loaded.usecases and n not in list_usecases(settings)]
    if unknown:
        log.error("not serving %s: no such file in conf/usecases/", ", ".join(map(repr, unknown)))
    servable = [loaded.usecases[name] for name in wanted if name in loaded.usecases]
    if not servable:
        reasons = "; ".join(str(e) for e in loaded.errors.values()) or f"unknown {unknown}"
        raise ConfigError(f"no use case to serve: {reasons}")
    return servable


def create_app(
    settings: Settings,
    usecases: Sequence[UseCase] | None = None,
    on_model_load: Callable[[], None] | None = None,
) -> FastAPI:
    """The app for `usecases` (default: serve.usecases, else every file in conf/usecases/), one
    client each; `on_model_load` as in Scores."""
    if usecases is None:
        usecases = servable_usecases(settings)
    clients = {
        usecase.name: Scores(usecase, settings, on_model_load=on_model_load) for usecase in usecases
    }
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(clients))
    follower = None
    if settings.state_on_object_store:  # first look before answering, then one per interval
        follower = StoreFollower(settings, usecases)
        follower.sync_once()
        registry.register(StoreSyncCollector(follower))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()

    app = FastAPI(
        title="prescore", summary="Published scores by key", version="1", lifespan=lifespan
    )
    # Innermost first: the body limit runs before the routes parse, after the token check.
    app.add_middleware(BodyLimit, max_bytes=settings.serve.max_body_bytes)
    if settings.serve.auth is not None:
        app.add_middleware(BearerAuth, tokens=api_tokens(settings.serve.auth))
    app.add_middleware(HeadAsGet)
    app.add_middleware(InternalErrorsAsJson)
    app.add_middleware(RequestMetrics, registry=registry)  # outermost: sees the 500s too
    _add_error_handlers(app)
    _add_lookup_routes(app, clients, settings.serve.max_batch)
    _add_probe_routes(app, clients, registry, follower)
    app.state.store_follower = follower  # None unless the state is on an object store
    return app


def _add_lookup_routes(app: FastAPI, clients: dict[str, Scores], max_batch: int) -> None:
    def client_of(usecase: str) -> Scores:
        if usecase not in clients:  # not the known ones: a caller learns no other use case
            raise HTTPException(404, f"unknown use case {usecase[:100]!r}")
        return clients[usecase]

    async def get_score(request: Request) -> JSONResponse:
        usecase, key = request.path_params["usecase"], request.path_params["key"]
        client = client_of(usecase)
        with lookup_errors(usecase):
            score = client.get(key.split(","))
        status = 404 if score.freshness == "missing" else 200
        (body,) = answers(client.usecase, [score])
        return json_answer(body, status)

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
        with lookup_errors(usecase):
            if request.features is None:
                scores = client.get_many(request.keys)
            else:  # a miss may load a model version: seconds, off the event loop
                scores = await run_in_threadpool(
                    client.get_many, request.keys, features=request.features
                )
        return json_answer({"scores": answers(client.usecase, scores)})

    @app.post(
        "/v1/{usecase}/scores:compute",
        response_model=None,
        responses={200: {"model": BatchAnswer}},
        summary="Scores computed now from feature values by the champion model, in row order",
    )
    def compute_scores(usecase: str, request: ComputeRequest) -> JSONResponse:
        # A plain def: the first call loads the model (seconds), off the event loop.
        client = client_of(usecase)
        if not 1 <= len(request.rows) <= max_batch:
            raise HTTPException(413, f"{len(request.rows)} rows; 1 to {max_batch} per request")
        with lookup_errors(usecase):
            scores = client.compute(request.rows)
        return json_answer({"scores": answers(client.usecase, scores)})


@contextlib.contextmanager
def lookup_errors(usecase: str) -> Iterator[None]:
    """A lookup's expected failures as HTTP errors: 503 when the use case cannot answer (nothing
    published, its snapshot missing or damaged: the other use cases are not touched), 422 for a
    bad key; without filesystem paths."""
    try:
        yield
    except NothingPublishedError:
        raise HTTPException(503, f"nothing published for use case {usecase!r} yet") from None
    except ModelNotFoundError as exc:  # no @champion to compute with, or not a package
        raise HTTPException(503, without_paths(str(exc))) from None
    except (SnapshotNotFoundError, SnapshotUnreadableError) as exc:
        # Not logged here, at every request: the client logs a damaged snapshot once.
        raise HTTPException(503, without_paths(str(exc))) from None
    except ValueError as exc:
        raise HTTPException(422, without_paths(str(exc))) from None


def _add_probe_routes(
    app: FastAPI,
    clients: dict[str, Scores],
    registry: CollectorRegistry,
    follower: StoreFollower | None,
) -> None:
    def state_of(name: str) -> dict[str, Any]:
        """A use case's readiness; with the state on a store, also how fresh its copy is (it
        keeps answering from the last good snapshot while the store cannot be read)."""
        state = readiness(clients[name])
        if follower is not None:
            store = follower.state(name)
            if "error" in store:
                store["error"] = without_paths(store["error"])
            state["store"] = store
        return state

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Each use case ready or why not: 200 while any can answer ('ready' when all can, "
        "else 'degraded'), 503 when none can",
    )
    async def readyz() -> JSONResponse:
        states = {name: state_of(name) for name in clients}
        ready = sum(state["ready"] for state in states.values())
        status = "ready" if ready == len(states) else "degraded" if ready else "not ready"
        # One unpublished or damaged use case must not take a host that serves the others out of
        # its load balancer: per-use-case routing reads /readyz/{usecase}.
        body = {"status": status, "usecases": states}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/readyz/{usecase}", summary="One use case: 200 when it can answer, else 503 and why")
    async def readyz_usecase(usecase: str) -> JSONResponse:
        if usecase not in clients:
            raise HTTPException(404, f"unknown use case {usecase[:100]!r}")
        state = state_of(usecase)
        return JSONResponse(
            {"usecase": usecase, **state}, status_code=200 if state["ready"] else 503
        )

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
    insecure: bool = False,
) -> None:
    """Run the app under uvicorn until SIGINT/SIGTERM (uvloop and httptools when installed).

    ValueError, before listening, for a host other than loopback without serve.auth unless
    `insecure`: anyone who can reach the port could read every score."""
    import uvicorn

    host = host or settings.serve.host
    if settings.serve.auth is None and not insecure and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without authentication: set serve.auth "
            "(tokens from an environment variable), or pass --insecure"
        )
    app = create_app(settings, on_model_load=compute.settle_heap)
    compute.preload()
    compute.settle_heap()
    uvicorn.run(
        app,
        host=host,
        port=settings.serve.port if port is None else port,
        access_log=access_log,
    )
