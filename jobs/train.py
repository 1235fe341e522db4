"""spark-submit entry point for the train stage: `spark-submit jobs/train.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("train")
