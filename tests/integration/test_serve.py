"""HTTP lookups: uvicorn on loopback answering from real DuckDB snapshots, exactly as the client does."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from prescore.config import ServeAuth, Settings, UseCase
from prescore.serving import keyindex
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from support import point_current_to, publish_snapshot, running

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 5)
KEYS = [f"C{i:08d}" for i in range(300)]
TRACEBACK_MARKERS = ("Traceback", 'File "', "duckdb.", "pyarrow.")


def assert_no_internals(text: str) -> None:
    assert not any(marker in text for marker in TRACEBACK_MARKERS), text[:300]


def score_v1(i: int) -> float:
    return i / 1000


def score_v2(i: int) -> float:
    return 0.5 + i / 1000


def raw_get(http: httpx.Client, path: str) -> tuple[int, str]:
    """GET `path` exactly as given: httpx would resolve '..' and refuse URLs over 64 KiB."""
    connection = HTTPConnection(http.base_url.host, http.base_url.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def serve_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("serve")})


@pytest.fixture(scope="module")
def by_tenure(churn: UseCase) -> UseCase:
    """A use case with a composite key (string, integer), to look up comma-separated path keys."""
    return churn.model_copy(
        update={"name": "churn_by_tenure", "keys": ["customer_id", "tenure_months"]}
    )


@pytest.fixture(scope="module")
def snapshots(serve_settings: Settings, churn: UseCase, by_tenure: UseCase) -> tuple[Path, Path]:
    """churn v1 and v2 (v1 current), and churn_by_tenure v1."""
    second = publish_snapshot(
        serve_settings, churn, [(k, score_v2(i)) for i, k in enumerate(KEYS)], 2
    )
    first = publish_snapshot(
        serve_settings, churn, [(k, score_v1(i)) for i, k in enumerate(KEYS)], 1
    )
    publish_snapshot(
        serve_settings, by_tenure, [(k, i % 7, score_v1(i)) for i, k in enumerate(KEYS)], 1
    )
    return first, second


@pytest.fixture(scope="module")
def http(
    serve_settings: Settings, churn: UseCase, by_tenure: UseCase, snapshots: tuple[Path, Path]
) -> Iterator[httpx.Client]:
    with running(create_app(serve_settings, [churn, by_tenure])) as client:
        yield client


@pytest.fixture(scope="module")
def client(serve_settings: Settings, churn: UseCase, snapshots: tuple[Path, Path]) -> Scores:
    return Scores(churn, serve_settings)


def expected(usecase: UseCase, client: Scores, key: Any) -> dict[str, Any]:
    score = client.get(key)
    return {
        "usecase": usecase.name,
        "key": dict(zip(usecase.keys, score.key, strict=True)),
        "score": score.score,
        "freshness": score.freshness,
        "model_name": score.model_name,
        "model_version": score.model_version,
        "scored_at": score.scored_at.isoformat() if score.scored_at else None,
        "valid_until": score.valid_until.isoformat() if score.valid_until else None,
        "source": score.source,
        "reasons": None,  # this use case does not explain its scores
    }


def test_single_key_answer_equals_the_client(
    http: httpx.Client, client: Scores, churn: UseCase
) -> None:
    response = http.get("/v1/churn/scores/C00000042")
    assert response.status_code == 200
    assert response.json() == expected(churn, client, "C00000042")
    assert response.json()["score"] == pytest.approx(score_v1(42))


def test_batch_answers_equal_the_client_in_request_order(
    http: httpx.Client, client: Scores, churn: UseCase
) -> None:
    keys = ["C00000007", "nobody", "C00000003", ["C00000001"]]
    response = http.post("/v1/churn/scores:batch", json={"keys": keys})
    assert response.status_code == 200
    assert response.json() == {"scores": [expected(churn, client, k) for k in keys]}
    missing = [s["freshness"] == "missing" for s in response.json()["scores"]]
    assert missing == [False, True, False, False]


def test_composite_key_in_the_path_is_comma_separated_in_key_column_order(
    http: httpx.Client, serve_settings: Settings, by_tenure: UseCase
) -> None:
    response = http.get("/v1/churn_by_tenure/scores/C00000010,3")
    assert response.status_code == 200
    body = response.json()
    assert body == expected(by_tenure, Scores(by_tenure, serve_settings), ("C00000010", 3))
    assert body["key"] == {"customer_id": "C00000010", "tenure_months": 3}
    batch = http.post("/v1/churn_by_tenure/scores:batch", json={"keys": [["C00000010", 3]]})
    assert batch.json()["scores"] == [body]


def test_unknown_use_case_is_404(http: httpx.Client) -> None:
    for response in (
        http.get("/v1/nope/scores/C00000001"),
        http.post("/v1/nope/scores:batch", json={"keys": ["C00000001"]}),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "unknown use case 'nope'"  # the known ones unlisted
        assert_no_internals(response.text)


def test_unknown_key_is_404_with_freshness_missing(http: httpx.Client) -> None:
    response = http.get("/v1/churn/scores/C99999999")
    assert response.status_code == 404
    assert response.json() == {
        "usecase": "churn",
        "key": {"customer_id": "C99999999"},
        "score": None,
        "freshness": "missing",
        "model_name": None,
        "model_version": None,
        "scored_at": None,
        "valid_until": None,
        "source": None,
        "reasons": None,
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/churn/scores/C00000001,C00000002", None),
        ("GET", "/v1/churn_by_tenure/scores/C00000010", None),
        ("GET", "/v1/churn_by_tenure/scores/C00000010,three", None),
        ("POST", "/v1/churn/scores:batch", {"keys": [["C00000001", "C00000002"]]}),
        ("POST", "/v1/churn/scores:batch", {"keys": [None]}),
        ("POST", "/v1/churn/scores:batch", {"keys": [1.5]}),
        ("POST", "/v1/churn/scores:batch", {"keys": [{"customer_id": "C00000001"}]}),
        ("POST", "/v1/churn/scores:batch", {"keys": "C00000001"}),
        ("POST", "/v1/churn/scores:batch", {}),
        ("POST", "/v1/churn_by_tenure/scores:batch", {"keys": [["C00000010", True]]}),
    ],
    ids=[
        "arity-path",
        "composite-short",
        "composite-not-int",
        "arity-batch",
        "null",
        "float",
        "object",
        "not-a-list",
        "no-keys",
        "bool-for-int",
    ],
)
@pytest.mark.reliability
def test_invalid_key_is_422_with_a_short_reason(
    http: httpx.Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = http.request(method, path, json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and 0 < len(detail) < 500
    assert_no_internals(detail)


@pytest.mark.reliability
def test_batch_over_the_limit_is_413(http: httpx.Client, serve_settings: Settings) -> None:
    limit = serve_settings.serve.max_batch
    assert http.post("/v1/churn/scores:batch", json={"keys": KEYS[:1] * limit}).status_code == 200
    response = http.post("/v1/churn/scores:batch", json={"keys": KEYS[:1] * (limit + 1)})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]


@pytest.mark.reliability
@pytest.mark.parametrize(
    "key",
    [
        "C00000001'",
        "C00000001' or '1'='1",
        '"; drop table predictions; --',
        "C00000001); select * from read_csv('/etc/passwd'",
        "../../etc/passwd",
        "%00",
        "C" * 100_000,
    ],
    ids=["quote", "or-true", "drop", "read-file", "traversal", "nul", "100k-chars"],
)
@pytest.mark.reliability
def test_injected_keys_are_refused_or_missing_never_500(
    http: httpx.Client, client: Scores, key: str
) -> None:
    answers = [
        raw_get(http, "/v1/churn/scores/" + quote(key, safe="/")),  # slashes left as they are
        raw_get(http, "/v1/churn/scores/" + quote(key, safe="")),
    ]
    batch = http.post("/v1/churn/scores:batch", json={"keys": [key]})
    for status, text in answers:
        # 400: uvicorn's HTTP parser refuses the 100k-character request line before the app.
        assert status in (400, 404, 422), text[:200]
        assert_no_internals(text)
    assert batch.status_code == 200
    assert [s["freshness"] for s in batch.json()["scores"]] == ["missing"]
    assert client.get("C00000001").score == pytest.approx(score_v1(1))  # the table is intact


@pytest.mark.reliability
def test_corrupt_snapshot_is_503_naming_the_file_and_only_that_use_case_unready(
    serve_settings: Settings, churn: UseCase, snapshots: tuple[Path, Path], http: httpx.Client
) -> None:
    corrupt = snapshots[0].with_name("2026-11-05-v99.duckdb")
    for path in (corrupt, keyindex.key_file(corrupt)):
        path.write_bytes(b"not a snapshot " * 1000)
    point_current_to(serve_settings, churn, corrupt)
    try:
        response = http.get("/v1/churn/scores/C00000001")
        assert response.status_code == 503
        assert "2026-11-05-v99.keys.arrow" in response.json()["detail"]
        assert str(serve_settings.state_dir) not in response.text
        assert_no_internals(response.text)
        ready = http.get("/readyz")
        assert ready.status_code == 200  # churn_by_tenure still answers: the host stays in
        assert ready.json()["status"] == "degraded"
        assert ready.json()["usecases"]["churn"]["ready"] is False
        assert ready.json()["usecases"]["churn_by_tenure"]["ready"] is True
        assert http.get("/readyz/churn").status_code == 503
        assert http.get("/v1/churn_by_tenure/scores/C00000010,3").status_code == 200
    finally:
        point_current_to(serve_settings, churn, snapshots[0])
    assert http.get("/v1/churn/scores/C00000001").status_code == 200


def test_healthz_answers_ok(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_and_lookups_are_503_until_a_snapshot_is_published(
    fresh_settings: Settings, churn: UseCase
) -> None:
    with running(create_app(fresh_settings, [churn])) as http:
        before = http.get("/readyz")
        assert before.status_code == 503
        assert before.json()["status"] == "not ready"
        assert before.json()["usecases"]["churn"]["ready"] is False
        assert "no published snapshot" in before.json()["usecases"]["churn"]["reason"]
        assert http.get("/healthz").status_code == 200
        lookup = http.get("/v1/churn/scores/C00000001")
        assert lookup.status_code == 503
        assert lookup.json() == {"detail": "nothing published for use case 'churn' yet"}

        publish_snapshot(fresh_settings, churn, [("C00000001", 0.25)], 1)
        after = http.get("/readyz")
        assert after.status_code == 200
        assert after.json() == {
            "status": "ready",
            "usecases": {"churn": {"ready": True, "snapshot": "2026-11-05-v1.duckdb"}},
        }
        assert http.get("/v1/churn/scores/C00000001").json()["score"] == 0.25


def test_metrics_count_requests_by_route_and_status_and_show_snapshot_age(
    http: httpx.Client,
) -> None:
    http.get("/v1/churn/scores/C00000001")
    http.get("/v1/churn/scores/C99999999")
    text = http.get("/metrics").text
    route = 'route="/v1/{usecase}/scores/{key}"'
    assert f'prescore_http_requests_total{{method="GET",{route},status="200"}}' in text
    assert f'prescore_http_requests_total{{method="GET",{route},status="404"}}' in text
    assert f'prescore_http_request_duration_seconds_bucket{{le="0.001",{route}}}' in text
    assert 'prescore_snapshot_info{run_date="2026-11-05",usecase="churn",version="1"} 1.0' in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith('prescore_snapshot_age_seconds{usecase="churn"}')
    )
    assert 0 <= float(age.split()[-1]) < 3600
    assert "C00000001" not in text  # keys never become label values


def test_openapi_docs_are_served(http: httpx.Client) -> None:
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/{usecase}/scores/{key}", "/v1/{usecase}/scores:batch"} <= set(paths)


@pytest.mark.reliability
def test_hot_swap_between_snapshots_never_fails_a_request(
    http: httpx.Client, serve_settings: Settings, churn: UseCase, snapshots: tuple[Path, Path]
) -> None:
    """Readers loop while current.duckdb moves between v1 and v2: every answer is whole."""
    allowed = {
        (str(v), KEYS[i]): s
        for i in range(len(KEYS))
        for v, s in ((1, score_v1(i)), (2, score_v2(i)))
    }
    stop = threading.Event()
    seen: list[tuple[str, str, float]] = []
    failures: list[str] = []

    def read(worker: int) -> None:
        with httpx.Client(base_url=http.base_url, timeout=10) as own:
            for i in itertools.count(worker, 7):
                if stop.is_set():
                    return
                key = KEYS[i % len(KEYS)]
                try:
                    response = own.get(f"/v1/churn/scores/{key}")
                except httpx.HTTPError as exc:
                    failures.append(f"{key}: {exc!r}")
                    continue
                if response.status_code != 200:
                    failures.append(f"{key}: {response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                seen.append((body["model_version"], key, body["score"]))

    readers = [threading.Thread(target=read, args=(w,)) for w in range(4)]
    for reader in readers:
        reader.start()
    try:
        for swap in range(8):
            time.sleep(0.05)
            point_current_to(serve_settings, churn, snapshots[(swap + 1) % 2])
        time.sleep(0.05)
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)
        point_current_to(serve_settings, churn, snapshots[0])
    assert failures == []
    assert {version for version, _, _ in seen} == {"1", "2"}
    assert all(allowed[(version, key)] == score for version, key, score in seen)


def test_prescore_serve_starts_answers_the_use_cases_asked_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(tmp_path)}
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [prescore, "serve", "--port", str(port), "--usecase", "churn"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "prescore serve did not start"
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert list(ready.json()["usecases"]) == ["churn"]  # forecast is not served: not waited for
        assert (
            httpx.get(f"http://127.0.0.1:{port}/v1/forecast/scores/S1", timeout=5).status_code
            == 404
        )
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, as a process should.
        assert process.wait(timeout=15) == -signal.SIGTERM
        log = process.stdout.read() if process.stdout else ""
        assert f"running on http://127.0.0.1:{port}" in log  # loopback unless --host says otherwise
        assert "Application shutdown complete" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- HTTP hardening (issue 17)


def raw_exchange(http: httpx.Client, request: bytes, *, body_chunks: int = 0) -> str:
    """Send `request` (then `body_chunks` 64 KiB HTTP chunks, never the last one) on a socket and
    return what the server answers within 10 s: the answer cannot wait for a body never sent."""
    with socket.create_connection((http.base_url.host, http.base_url.port), timeout=10) as sock:
        sock.sendall(request)
        chunk = b"%x\r\n%s\r\n" % (65536, b"k" * 65536)
        for _ in range(body_chunks):
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = sock.recv(65536)
            assert received, f"connection closed after {answer!r}"
            answer += received
        return answer.decode(errors="replace")


@pytest.fixture(scope="module")
def small_body_http(
    serve_settings: Settings, churn: UseCase, snapshots: tuple[Path, Path]
) -> Iterator[httpx.Client]:
    """The app with serve.max_body_bytes 100_000."""
    limited = serve_settings.serve.model_copy(update={"max_body_bytes": 100_000})
    with running(create_app(serve_settings.model_copy(update={"serve": limited}), [churn])) as c:
        yield c


def test_max_body_bytes_defaults_to_one_mebibyte(settings: Settings) -> None:
    assert settings.serve.max_body_bytes == 1_048_576


@pytest.mark.reliability
def test_body_over_the_limit_by_content_length_is_413_before_it_is_sent(
    small_body_http: httpx.Client,
) -> None:
    answer = raw_exchange(
        small_body_http,
        b"POST /v1/churn/scores:batch HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 54000000\r\n\r\n",
    )
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "request body over 100000 bytes" in answer


@pytest.mark.reliability
def test_chunked_body_over_the_limit_is_413_while_it_streams(
    small_body_http: httpx.Client,
) -> None:
    answer = raw_exchange(
        small_body_http,
        b"POST /v1/churn/scores:batch HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        body_chunks=2,  # 128 KiB of a body that never ends
    )
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_bodies_within_the_limit_chunked_or_not_are_answered(
    small_body_http: httpx.Client,
) -> None:
    body = json.dumps({"keys": KEYS[:50]}).encode()
    headers = {"content-type": "application/json"}
    sized = small_body_http.post("/v1/churn/scores:batch", content=body, headers=headers)
    parts = iter([body[:100], body[100:]])
    chunked = small_body_http.post("/v1/churn/scores:batch", content=parts, headers=headers)
    assert "content-length" not in chunked.request.headers
    assert sized.status_code == chunked.status_code == 200
    assert sized.json() == chunked.json()
    assert len(sized.json()["scores"]) == 50


@pytest.mark.reliability
def test_a_key_that_is_not_valid_text_is_422_never_500(http: httpx.Client) -> None:
    batch = http.post(
        "/v1/churn/scores:batch",
        content=b'{"keys": ["C00000001", "\\ud800"]}',
        headers={"content-type": "application/json"},
    )
    assert batch.status_code == 422, batch.text
    assert "not valid text" in batch.json()["detail"]
    assert_no_internals(batch.text)
    status, text = raw_get(http, "/v1/churn/scores/%ED%A0%80")  # a surrogate's UTF-8 bytes
    assert status in (404, 422), text
    assert_no_internals(text)


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/readyz/churn", "/metrics", "/v1/churn/scores/C00000001"]
)
def test_head_answers_wherever_get_does_with_headers_only(http: httpx.Client, path: str) -> None:
    get, head = http.get(path), http.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""


def test_head_of_a_post_only_route_is_405_like_get(http: httpx.Client) -> None:
    assert http.head("/v1/churn/scores:batch").status_code == 405


def test_readyz_of_one_use_case_and_of_an_unknown_one(http: httpx.Client) -> None:
    one = http.get("/readyz/churn")
    assert (one.status_code, one.json()) == (
        200,
        {"usecase": "churn", "ready": True, "snapshot": "2026-11-05-v1.duckdb"},
    )
    unknown = http.get("/readyz/nope")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "unknown use case 'nope'"})


def test_one_unpublished_use_case_leaves_the_host_ready_for_the_others(
    fresh_settings: Settings, churn: UseCase, by_tenure: UseCase
) -> None:
    publish_snapshot(fresh_settings, churn, [("C00000001", 0.25)], 1)
    with running(create_app(fresh_settings, [churn, by_tenure])) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["usecases"]["churn"] == {
            "ready": True,
            "snapshot": "2026-11-05-v1.duckdb",
        }
        assert ready.json()["usecases"]["churn_by_tenure"]["ready"] is False
        assert http.get("/readyz/churn_by_tenure").status_code == 503
        assert http.get("/readyz/churn").status_code == 200
        assert str(fresh_settings.state_dir) not in ready.text  # file names only


@pytest.mark.reliability
def test_a_deleted_served_key_file_is_not_ready_and_503_and_the_path_stays_hidden(
    fresh_settings: Settings, churn: UseCase, by_tenure: UseCase
) -> None:
    snapshot = publish_snapshot(fresh_settings, churn, [("C00000001", 0.25)], 1)
    publish_snapshot(fresh_settings, by_tenure, [("C00000001", 3, 0.5)], 1)
    with running(create_app(fresh_settings, [churn, by_tenure])) as http:
        assert http.get("/v1/churn/scores/C00000001").json()["score"] == 0.25
        keyindex.key_file(snapshot).unlink()
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["usecases"]["churn"]["ready"] is False
        assert "2026-11-05-v1.keys.arrow" in ready.json()["usecases"]["churn"]["reason"]
        lookup = http.get("/v1/churn/scores/C00000001")
        assert lookup.status_code == 503
        assert "2026-11-05-v1" in lookup.json()["detail"]
        assert http.get("/v1/churn_by_tenure/scores/C00000001,3").json()["score"] == 0.5
        for text in (ready.text, lookup.text):
            assert str(fresh_settings.state_dir) not in text


TOKEN = "t0ken-for-tests-only"


@pytest.fixture(scope="module")
def authed_http(
    serve_settings: Settings, churn: UseCase, snapshots: tuple[Path, Path]
) -> Iterator[httpx.Client]:
    """The app with serve.auth on, tokens from PRESCORE_TEST_TOKENS (two of them)."""
    os.environ["PRESCORE_TEST_TOKENS"] = f"other-token, {TOKEN}"
    authed = serve_settings.serve.model_copy(
        update={"auth": ServeAuth(tokens_env="PRESCORE_TEST_TOKENS")}
    )
    try:
        app = create_app(serve_settings.model_copy(update={"serve": authed}), [churn])
    finally:
        del os.environ["PRESCORE_TEST_TOKENS"]
    with running(app) as client:
        yield client


@pytest.mark.reliability
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer", "Basic " + TOKEN, TOKEN, "Bearer t0ken"]
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/churn/scores/C00000001"),
        ("POST", "/v1/churn/scores:batch"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ],
)
def test_with_auth_a_missing_or_wrong_token_is_401_with_a_bearer_challenge(
    authed_http: httpx.Client, authorization: str | None, method: str, path: str
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    response = authed_http.request(method, path, headers=headers, json={"keys": ["C00000001"]})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


def test_with_auth_either_token_answers_and_probes_need_none(authed_http: httpx.Client) -> None:
    for token in (TOKEN, "other-token"):
        response = authed_http.get(
            "/v1/churn/scores/C00000001", headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
        assert response.json()["score"] == pytest.approx(score_v1(1))
    for probe in ("/healthz", "/readyz", "/readyz/churn"):
        assert authed_http.get(probe).status_code == 200


def test_auth_without_tokens_in_its_variable_refuses_to_start(
    serve_settings: Settings, churn: UseCase
) -> None:
    authed = serve_settings.serve.model_copy(update={"auth": ServeAuth(tokens_env="PRESCORE_NONE")})
    with pytest.raises(ValueError, match="PRESCORE_NONE holds no token"):
        create_app(serve_settings.model_copy(update={"serve": authed}), [churn])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.reliability
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_prescore_serve_refuses_a_non_loopback_host_without_auth_or_insecure(
    tmp_path: Path, host: str
) -> None:
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(tmp_path)}
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [prescore, "serve", "--host", host, "--port", str(free_port()), "--usecase", "churn"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    error = [line for line in done.stderr.splitlines() if "error" in line]
    assert error == [
        f"prescore serve: error: refusing to listen on {host} without authentication: "
        "set serve.auth (tokens from an environment variable), or pass --insecure"
    ]


def test_prescore_serve_with_auth_from_conf_answers_tokens_and_never_logs_them(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).parents[2] / "conf", conf)
    base = conf / "base.yaml"
    base.write_text(base.read_text().replace("  auth:", "  auth: {tokens_env: MY_TOKENS}"))
    port = free_port()
    env = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(tmp_path / "state"),
        "PRESCORE_CONF_DIR": str(conf),
        "MY_TOKENS": TOKEN,
    }
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [prescore, "serve", "--port", str(port), "--usecase", "churn", "--access-log"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                httpx.get(f"{base_url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "prescore serve did not start"
                time.sleep(0.1)
        lookup = f"{base_url}/v1/churn/scores/C1"
        assert httpx.get(lookup, timeout=5).status_code == 401
        authorized = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(lookup, headers=authorized, timeout=5).status_code == 503  # unpublished
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        log = process.stdout.read() if process.stdout else ""
        assert "/v1/churn/scores/C1" in log  # the access log is on
        assert TOKEN not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
