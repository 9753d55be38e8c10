"""Measured comparisons of the project; ``python -m benchmarks`` runs every table."""
