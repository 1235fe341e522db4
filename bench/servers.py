"""Servers the benchmarks time: a command in a subprocess on a free loopback port, ready once a
GET of its readiness path answers 200, stopped on the way out."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import BENCH_DIR
from prescore.config import Settings

PRESCORE_COMMAND = Path(sys.executable).with_name("prescore")  # the venv's `prescore` script


def free_port() -> int:
    """A port free on the loopback now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A server in a subprocess on a loopback port, ready once GET `ready_path` answers 200."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=out, cwd=BENCH_DIR.parent
            )

    def wait_ready(self, timeout: float = 300.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}); see {self.log}"
                )
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", self.ready_path)
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass  # not listening yet
            finally:
                conn.close()
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of the process and its descendants (Linux /proc):
        `mlflow models serve` runs its server in a child process."""
        assert self.process is not None
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of `root` and every live descendant; 0 where /proc is not."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parents[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | children, bool(children)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def prescore_service(
    settings: Settings, log: Path, *, name: str = "prescore serve", conf_dir: Path | None = None
) -> Service:
    """`prescore serve --usecase churn` on `settings`' state folder (and `conf_dir`, if given),
    with the test environment's settings as the benchmarks load them."""
    port = free_port()
    env = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(Path(settings.state_dir).resolve()),
        **({"PRESCORE_CONF_DIR": str(conf_dir)} if conf_dir else {}),
    }
    command = [str(PRESCORE_COMMAND), "serve", "--usecase", "churn"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return Service(name, command, env, "/readyz", port, log)


@contextmanager
def running(*services: Service) -> Iterator[None]:
    """The services started together, ready, and stopped on the way out."""
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_ready()
        yield
    finally:
        for service in services:
            service.stop()


# moto's S3 server in a child process that stops when its stdin closes: when the process that
# started it ends, however it ends. Conditional writes are decided one at a time, as S3 decides
# them: moto checks If-None-Match / If-Match, then writes, unlocked, so two such PUTs of one key
# arriving together could both pass its check (two Delta drivers racing for one commit file did,
# once in 40 rounds).
_S3_SERVER = """
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

moto = DomainDispatcherApplication(create_backend_app)
conditional = threading.Lock()


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "PUT" and (
        "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
    ):
        with conditional:
            return list(moto(environ, start_response))
    return moto(environ, start_response)


server = make_server(
    "127.0.0.1", int(sys.argv[1]), app, threaded=True, request_handler=MotoRequestHandler
)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
server.shutdown()
"""


@contextmanager
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's standalone server, from PyPI) on a free loopback
    port, for as long as the block runs: its endpoint URL. Tests and benchmarks share it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _S3_SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        assert server.stdout.readline().strip() == b"ready", "moto's S3 server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
