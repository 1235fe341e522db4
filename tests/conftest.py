"""Shared fixtures: one local[2] SparkSession with Delta, and Settings on a temporary state folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.spark import get_spark

# py4j logs at INFO while the interpreter shuts down, after pytest closed the captured streams.
logging.getLogger("py4j").setLevel(logging.WARNING)

# Tests hash PII with a throwaway key; production reads it from the environment only.
os.environ.setdefault("PRESCORE_HMAC_KEY", "test-only-hmac-key")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """conf/base.yaml + conf/env/test.yaml, with every table and file under a fresh tmp folder."""
    state_dir: Path = tmp_path_factory.mktemp("state")
    return load_settings(env="test").model_copy(update={"state_dir": state_dir})


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[SparkSession]:
    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def churn(settings: Settings) -> UseCase:
    return load_usecase("churn", settings)


@pytest.fixture
def fresh_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose state folder is empty, for tests that must not see other tests' tables."""
    return settings.model_copy(update={"state_dir": tmp_path / "state"})
