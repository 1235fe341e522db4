"""spark-submit entry point for the clean stage: `spark-submit jobs/clean.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("clean")
