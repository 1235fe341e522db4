"""spark-submit entry point for retention: `spark-submit jobs/retention.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("retention")
