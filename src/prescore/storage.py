"""Where state lives: a local folder or an object-store prefix, behind one path type.

`state_dir` is a local folder (a pathlib.Path) or an S3 prefix, `s3a://bucket/prefix` (`s3://` names
the same place and is kept as s3a://, Spark's scheme). A prefix is a universal_pathlib `UPath` over
s3fs, so the same operations (`/`, glob, open, exists, read_text) work on both, and code that lists
landing files or writes a report never asks where the state is. Spark reads the same URI through
hadoop-aws (prescore.platform.spark), MLflow its artifact root through boto3 (`artifact_uri`).

Credentials and the endpoint come from the environment only, in the AWS SDKs' own variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, and AWS_ENDPOINT_URL for
an S3-compatible server such as MinIO): no configuration file names them and nothing here logs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from upath import UPath

SCHEME = "s3a"
# Schemes taken as the same S3 store; the first is how prescore writes it.
OBJECT_STORE_SCHEMES = (SCHEME, "s3")
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the SDKs' order

# A state location: a local folder, or a prefix on the object store.
StatePath = Path | UPath


def state_location(value: Any, *, root: Path) -> StatePath:
    """`value` as a state location: an s3a:// or s3:// prefix, else a local folder (relative to
    `root`). Another scheme is refused, not taken for a local folder named `gs:`."""
    if isinstance(value, UPath) and value.protocol:
        value = str(value)
    if isinstance(value, str) and "://" in value:
        scheme, rest = value.split("://", 1)
        bucket = rest.strip("/").split("/", 1)[0]
        if scheme.lower() not in OBJECT_STORE_SCHEMES or not bucket:
            raise ValueError(
                f"{value!r}: a state folder is a local path or s3a://<bucket>/<prefix> "
                "(s3:// is the same)"
            )
        # No listings cache: Spark writes objects s3fs never sees, and a cached listing of a
        # table's log or a landing folder would hide them.
        return UPath(f"{SCHEME}://{rest.strip('/')}", use_listings_cache=False)
    path = Path(value)
    return path if path.is_absolute() else (root / path).resolve()


def is_object_store(path: StatePath) -> bool:
    return isinstance(path, UPath) and path.protocol in OBJECT_STORE_SCHEMES


def s3_uri(path: StatePath) -> str:
    """`path` as the clients other than Hadoop's name it (boto3, DuckDB's httpfs): s3:// on the
    store, the plain path on disk."""
    if isinstance(path, Path):
        return str(path)
    return "s3://" + str(path).split("://", 1)[1]


def artifact_uri(path: StatePath) -> str:
    """The URI MLflow takes for an artifact root: s3:// on the store, file:// on disk."""
    return path.as_uri() if isinstance(path, Path) else s3_uri(path)


def endpoint() -> str | None:
    """The S3-compatible server named in the environment (MinIO, a test server), or None: AWS."""
    return next((os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None)


def upload(local: Path, target: UPath) -> None:
    """Upload a local file to the store with boto3's managed transfer (multipart, parts in
    parallel): faster than a write through s3fs, and the object appears only once complete."""
    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    server = target.storage_options.get("client_kwargs", {}).get("endpoint_url") or endpoint()
    bucket, key = s3_uri(target).removeprefix("s3://").split("/", 1)
    try:
        boto3.client("s3", endpoint_url=server).upload_file(str(local), bucket, key)
    except (Boto3Error, BotoCoreError, ClientError) as exc:  # as an OSError, like s3fs's
        why = redacted(str(exc))
        if server:  # also one named on the path rather than in the environment
            why = why.replace(server.rstrip("/"), "<store endpoint>")
        raise OSError(f"{target}: upload failed: {why}") from exc


def redacted(text: str) -> str:
    """`text` with the store's endpoint named, not spelled out: for logs and answers."""
    server = endpoint()
    return text.replace(server.rstrip("/"), "<store endpoint>") if server else text


def duckdb_secret_sql() -> str:
    """DuckDB's CREATE SECRET for the store, from the environment (httpfs reads no AWS variable
    itself). Run on a connection, never logged."""
    from prescore.identifiers import quote_literal

    values = {
        "key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": os.environ.get("AWS_SESSION_TOKEN"),
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    }
    server = endpoint()
    if server:
        scheme, _, host = server.partition("://")
        values |= {"endpoint": host.rstrip("/"), "url_style": "path"}
        values["use_ssl"] = "true" if scheme == "https" else "false"
    settings = ", ".join(f"{k} {quote_literal(v)}" for k, v in values.items() if v)
    return f"create or replace temporary secret prescore_state (type s3, {settings})"


@contextlib.contextmanager
def local_copies(paths: list[str], *, into: Path) -> Iterator[list[str]]:
    """`paths` as local files for as long as the block runs: local paths as they are, object-store
    URIs downloaded into a temporary folder in `into` (removed after)."""
    remote = [p for p in paths if "://" in p]
    if not remote:
        yield paths
        return
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into, prefix=".download-") as folder:
        local = []
        for index, path in enumerate(paths):
            if "://" not in path:
                local.append(path)
                continue
            target = Path(folder) / f"{index:05d}-{path.rsplit('/', 1)[-1]}"
            source = UPath(path, use_listings_cache=False)
            with source.open("rb") as remote_file, target.open("wb") as out:
                shutil.copyfileobj(remote_file, out, 8 << 20)
            local.append(str(target))
        yield local


def remove_tree(path: StatePath) -> bool:
    """Delete a folder (or every object under a prefix) and all it holds; False if there was none."""
    if not path.exists():
        return False
    if isinstance(path, Path):
        shutil.rmtree(path)
    else:
        path.fs.rm(path.path, recursive=True)
    return True
