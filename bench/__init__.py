"""Jumpstarter benchmarks: every figure is reported next to a bare-grpcio floor measured in the same run.

Run everything with `python bench/run.py` (or `--quick`); see bench/README.md.
"""
