"""Data in: sources, profiles, validation and cleaning of a use case's rows, and the data report."""
