"""Benchmarks of sam-i2v: each script prints a table and writes a JSON result (see common.py)."""
