"""Set up the JVM side once, at setup and image build: `python -m prescore.platform.jvm_setup`.

Resolves every set of Spark packages into the local jar store (prescore.platform.jars), compiles
Delta's S3 commit guard beside a set that reaches S3 (prescore.platform.logstore), makes the driver's
class-data-sharing archive (prescore.platform.cds), then starts a session from those jars to prove that
Spark loads Delta. scripts/fetch_delta_jars.sh runs it (with an mvn fallback when Ivy cannot reach
Maven Central); the Docker build runs it too.
"""

from __future__ import annotations

from pathlib import Path

from prescore.config import Settings, load_settings, load_usecases
from prescore.platform.cds import dump_archive
from prescore.platform.jars import cds_blockers, ensure_local_jars, jars_dir
from prescore.platform.logstore import needs_logstore, with_logstore
from prescore.platform.spark import get_spark, jars_packages, source_packages


def resolve_jars(settings: Settings) -> list[str]:
    """Resolve, once, every set of packages the settings' sessions and stages ask for (Delta,
    with each use case's JDBC driver), into the local jar store; returns the sets."""
    sets = [jars_packages(settings)]
    for usecase in load_usecases(settings).usecases.values():
        sets.append(jars_packages(settings, source_packages(usecase)))
    for coordinates in dict.fromkeys(sets):
        jars = ensure_local_jars(coordinates, settings.spark.conf)
        if needs_logstore(coordinates):  # s3a: Delta's commit guard, compiled beside the jars
            with_logstore(coordinates, jars)
    return list(dict.fromkeys(sets))


def class_data_sharing(archive: Path | None) -> str:
    """Setup's word on the driver's CDS archive: where it is, or why there is none."""
    if archive is not None:
        return f"driver CDS archive {archive}"
    folders = ", ".join(map(str, cds_blockers()))
    return f"no driver CDS archive: files in {folders}, on the driver's class path, rule it out"


def main() -> None:
    settings = load_settings()
    resolved = resolve_jars(settings)
    archive = dump_archive(settings)
    session = get_spark(settings)
    session.range(1).count()
    print(
        f"Spark {session.version} with {'; '.join(resolved)}: ready (jars in {jars_dir()}; "
        f"{class_data_sharing(archive)})"
    )
    session.stop()


if __name__ == "__main__":
    main()
