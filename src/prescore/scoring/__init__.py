"""Scoring: the model applied to every key (an Arrow UDF) and the checks a candidate must pass."""
