"""Scoring: predict (the scalar Arrow UDF, lineage stamps, shadow scores), population (the rows
a run date scores) and checks (what a candidate must pass before publish).
"""
