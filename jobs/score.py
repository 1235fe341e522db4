"""spark-submit entry point for the score stage: `spark-submit jobs/score.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("score")
