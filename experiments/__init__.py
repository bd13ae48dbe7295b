"""Experiment scripts and configs (run from the repository root)."""
