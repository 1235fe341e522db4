"""Shared fixtures: one local[2] SparkSession with Delta, and Settings on a temporary state folder.

Minimal version written alongside tests/integration/test_validate.py; extend freely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from prescore.config import Settings, load_settings
from prescore.spark import get_spark


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
