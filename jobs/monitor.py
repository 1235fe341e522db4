"""spark-submit entry point for the monitor stage: `spark-submit jobs/monitor.py --usecase U --run-date D`."""

from prescore.cli import run_job

if __name__ == "__main__":
    run_job("monitor")
