"""The store's one face: snapshot (the DuckDB file readers get, swapped atomically), publish_log
(every read and write of the log), keyindex (the key file format), client (Scores), http (the
FastAPI app) and bi (the BI views file).
"""
