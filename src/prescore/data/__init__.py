"""Data in: sources (landing files, JDBC, Delta: checked, read), profile (per-column statistics),
validation (the GX suite and its outcomes), cleaning (row rules, PII, fills, the split: pure
transforms) and report (the data report page).
"""
