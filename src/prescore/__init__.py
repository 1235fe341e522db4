"""prescore: batch precompute serving on Spark."""

__version__ = "0.1.0"
