"""spark-submit entry point for the ingest stage: `spark-submit jobs/ingest.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("ingest")
