"""Snapshots on an object store: publish's upload and a serving host's pickup, each against a
plain boto3 transfer of the same objects, in the same run, on moto's S3 server on loopback.

The snapshot of bench_publish's predictions (small: 1M keys, full: 10M) is built once, locally.
Then, round after round:

- publish: `store.push_snapshot` (both files, then their SHA-256) and `store.write_pointer`,
  what the publish stage does after building, against boto3's `upload_file` of the two files
  (its managed, multi-threaded multipart upload);
- pickup: `snapshot.follow_store` on an empty cache (read the pointer, download both files under
  temporary names, check both SHA-256, rename, move the local link), what a serving host does on
  a new publish, against boto3's `download_file` of the two files.

Targets (issue 20): each at most 1.5x its plain transfer (ratio >= 0.67). The server is moto's, a
Python process on the same two cores: its own cost is in both sides and makes the ratios
conservative next to a real store.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from bench import DATA_DIR, Measurement, best_times
from bench.bench_publish import prediction_files
from bench.servers import s3_server
from prescore.config import Settings, load_settings, load_usecase
from prescore.platform.spark import environment_set
from prescore.serving import keyindex, snapshot, store
from prescore.storage import state_location

BENCHMARK = "store"
BUCKET = "bench"
RUN_DATE = date(2026, 11, 1)
PLAIN_UPLOAD = "boto3 upload_file"
PUBLISH = "prescore push_snapshot + write_pointer"
PLAIN_DOWNLOAD = "boto3 download_file"
PICKUP = "prescore follow_store"


@contextmanager
def store_environment(endpoint: str) -> Iterator[None]:
    """The AWS variables every client reads (s3fs, boto3), for the block only."""
    wanted = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench-key-id",
        "AWS_SECRET_ACCESS_KEY": "bench-secret-access-key",
        "AWS_REGION": "us-east-1",
    }
    with environment_set(wanted):
        yield


def store_settings(folder: Path) -> Settings:
    """The test settings with the state on the bench bucket; MLflow and the cache under `folder`."""
    settings = load_settings(env="test")
    mlflow = settings.mlflow.model_copy(
        update={"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}"}
    )
    state = state_location(f"s3a://{BUCKET}/state", root=folder)
    update = {"state_dir": state, "mlflow": mlflow, "serving_cache_dir": folder / "publisher"}
    return settings.model_copy(update=update)


def run(size: str) -> list[Measurement]:
    import boto3

    folder = DATA_DIR / f"store-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    built = folder / "built" / "snapshot-bench.duckdb"
    built.parent.mkdir()
    with s3_server() as endpoint, store_environment(endpoint):
        settings = store_settings(folder)
        usecase = load_usecase("churn", settings)
        keys = snapshot.build_snapshot(
            built,
            parquet_files=prediction_files(size),
            run_date=RUN_DATE,
            keys=usecase.keys,
            views=snapshot.load_views(settings.sql_dir),
        )
        files = [keyindex.key_file(built), built]
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        host = settings.model_copy(update={"serving_cache_dir": folder / "host"})
        downloads = folder / "downloads"

        def plain_upload() -> None:
            for file in files:
                client.upload_file(str(file), BUCKET, f"plain/{file.name}")

        def publish() -> None:
            store.push_snapshot(settings, usecase, built)
            store.write_pointer(settings, usecase, built.name, run_date=str(RUN_DATE))

        def plain_download() -> None:
            shutil.rmtree(downloads, ignore_errors=True)
            downloads.mkdir()
            for file in files:
                client.download_file(BUCKET, f"plain/{file.name}", str(downloads / file.name))

        def pickup() -> None:
            shutil.rmtree(host.serving_cache_dir, ignore_errors=True)
            assert snapshot.follow_store(host, usecase) == built.name

        began = time.perf_counter()
        uploads = best_times({PLAIN_UPLOAD: plain_upload, PUBLISH: publish}, warmups=0)
        pickups = best_times({PLAIN_DOWNLOAD: plain_download, PICKUP: pickup}, warmups=0)
        elapsed = time.perf_counter() - began
    shutil.rmtree(folder, ignore_errors=True)
    common = f"{keys:,} keys, {megabytes:,.0f} MB in 2 files; best of 3 ({elapsed:.0f} s all)"
    rows = [
        (PLAIN_UPLOAD, "publish", uploads, None, "managed multipart upload"),
        (PUBLISH, "publish", uploads, PLAIN_UPLOAD, "+ SHA-256 of both, checksums, pointer"),
        (PLAIN_DOWNLOAD, "pickup", pickups, None, "managed download"),
        (PICKUP, "pickup", pickups, PLAIN_DOWNLOAD, "+ pointer, both SHA-256, rename, link"),
    ]
    return [
        Measurement(
            benchmark=BENCHMARK,
            subject=subject,
            metric=metric,
            value=seconds[subject],
            unit="s",
            higher_is_better=False,
            baseline=baseline,
            note=f"{what}; {common}" + ("; target <= 1.5x" if baseline else ""),
        )
        for subject, metric, seconds, baseline, what in rows
    ]
