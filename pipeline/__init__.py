"""Data pipeline: datasets, table schemas and the Ray runner."""
