"""The stages, one module each, run by prescore.flow (never by another stage).

Each has one `run(ctx)` that reads through platform, calls the pure cores of data/, training/,
scoring/, serving/ or monitoring/, writes through platform and returns a summary of what it read
and wrote: ingest, validate, clean, train, score, publish, monitor, and retention beside them.
"""
