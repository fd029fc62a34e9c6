"""Benchmarks of eo_baseline components (each module runnable with ``python -m``)."""
