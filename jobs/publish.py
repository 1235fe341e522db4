"""spark-submit entry point for the publish stage: `spark-submit jobs/publish.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("publish")
