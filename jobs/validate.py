"""spark-submit entry point for the validate stage: `spark-submit jobs/validate.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("validate")
