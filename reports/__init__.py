"""Metrics, figures and reports (no torch, no Ray)."""
