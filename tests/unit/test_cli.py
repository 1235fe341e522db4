"""The CLI's table of subcommands, and `prescore check` run as a user runs it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import prescore
from prescore.cli import COMMANDS, build_parser
from prescore.config import DEFAULT_CONF_DIR
from prescore.flow import STAGES

pytestmark = pytest.mark.unit


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def test_every_subcommand_has_a_handler_and_every_handler_a_subcommand() -> None:
    assert subcommands(build_parser()) == set(COMMANDS)


def test_each_stage_and_run_go_through_the_flow() -> None:
    assert {COMMANDS[stage] for stage in (*STAGES, "run")} == {COMMANDS["run"]}
    assert COMMANDS["promote"] is COMMANDS["rollback-model"]


# ---------------------------------------------------------------- prescore check, as a user runs it

# The `prescore` entry point's own call, plus a refusal (exit 99) if the check imported pyspark.
ENTRY = (
    "import sys\n"
    "from prescore.cli import main\n"
    "code = main()\n"
    "sys.exit(99 if 'pyspark' in sys.modules else code)\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A conf/ and expectations/ copy: churn and forecast, and `bad`, a key that is a feature."""
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    shutil.copytree(DEFAULT_CONF_DIR.parent / "expectations", tmp_path / "expectations")
    base = conf / "base.yaml"
    base.write_text(f"{base.read_text()}\nexpectations_dir: {tmp_path / 'expectations'}\n")
    bad = yaml.safe_load((conf / "usecases" / "churn.yaml").read_text())
    bad.update(name="bad", entity="bad_customers", keys=["customer_id", "tenure_months"])
    (conf / "usecases" / "bad.yaml").write_text(yaml.safe_dump(bad))
    return tmp_path


def prescore_check(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(prescore.__file__).parents[1]),
        "PRESCORE_CONF_DIR": str(project / "conf"),
        "PRESCORE_STATE_DIR": str(project / "state"),
    }
    env.pop("PRESCORE_ENV", None)
    command = [sys.executable, "-c", ENTRY, "check", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 99, "prescore check imported pyspark"
    assert not (project / "state").exists()  # nothing of the state folder is made or read
    return done


def test_check_summarises_a_valid_usecase(project: Path) -> None:
    done = prescore_check(project, "--usecase", "churn")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"churn: ok ({project / 'conf' / 'usecases' / 'churn.yaml'})")
    assert "  keys        customer_id\n" in out
    assert "  label       churned (int), task binary\n" in out
    assert "plan (3 levels)" in out
    assert "    critical  5: expect_table_columns_to_match_set" in out
    assert "expect_column_values_to_be_between(tenure_months)" in out
    assert done.stderr == ""


def test_check_refuses_a_key_that_is_a_feature_in_one_line(project: Path) -> None:
    done = prescore_check(project, "--usecase", "bad")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"prescore check: error: {project / 'conf' / 'usecases' / 'bad.yaml'}: keys and "
        "numeric_features both name ['tenure_months']: a column is a key, the label or a "
        "feature, one role only (a key identifies a row, it is not a model input)\n"
    )


def test_check_refuses_a_mistyped_column_of_a_warning_expectation(project: Path) -> None:
    suite = project / "expectations" / "raw_customers.json"
    data = json.loads(suite.read_text())
    data["expectations"].append(
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "monthly_charge"},
            "severity": "warning",
        }
    )
    suite.write_text(json.dumps(data))
    done = prescore_check(project, "--usecase", "churn")
    assert done.returncode == 1
    assert "severity warning): columns ['monthly_charge'] are not declared" in done.stderr


def test_check_without_usecase_checks_every_file_and_fails_on_any_bad_one(project: Path) -> None:
    done = prescore_check(project)
    assert done.returncode == 1
    assert "churn: ok (" in done.stdout and "forecast: ok (" in done.stdout
    errors = done.stderr.splitlines()
    assert len(errors) == 2
    assert "bad.yaml: keys and numeric_features both name ['tenure_months']" in errors[0]
    assert errors[1].endswith(
        f"1 of 3 use case files in {project / 'conf' / 'usecases'} are invalid"
    )

    (project / "conf" / "usecases" / "bad.yaml").unlink()
    assert prescore_check(project).returncode == 0
    for path in (project / "conf" / "usecases").iterdir():
        path.unlink()
    empty = prescore_check(project)
    assert (empty.returncode, empty.stdout) == (1, "")
    assert empty.stderr.endswith("usecases: no use case file (<name>.yaml)\n")
