"""Demo data: the generated landing files the demo use cases ingest."""
