"""Airflow import errors for conf/usecases/: every use-case file that does not load, with why.

This file holds no DAG. prescore_dags.py builds the DAGs of the valid use cases and skips an
invalid one, so one bad file never hides the others. The skipped ones must still be seen where
Airflow shows what did not load, so this file raises when a use-case file is invalid: Airflow
records that as an import error of this file, which the UI lists under "DAG Import Errors" and
`airflow dags list-import-errors` prints, naming each broken file, the field and the reason.

Why a file of its own. Airflow 3 ties an import error to a DAG file: raising in prescore_dags.py
would drop all its DAGs, and even an error recorded beside DAGs that did load marks those DAGs
stale (no longer scheduled). Warnings a DAG file emits are only logged by the DAG processor, not
stored or shown. A file with no DAG loses nothing by failing, so its import error is the report.

Wiring only, cheap to parse: it reads conf/ (YAML and pydantic), nothing else.
"""

from __future__ import annotations

from prescore.config import ConfigError, Settings, load_settings, load_usecases


def check_usecases(settings: Settings) -> None:
    """Raise ConfigError naming every invalid use-case file; the others' DAGs load regardless."""
    errors = load_usecases(settings).errors
    if errors:
        lines = "\n".join(f"- {error}" for error in errors.values())
        raise ConfigError(
            f"{len(errors)} use-case file(s) in {settings.conf_dir / 'usecases'} did not load; "
            f"their DAGs are not built, the other use cases' DAGs are:\n{lines}"
        )


check_usecases(load_settings())
