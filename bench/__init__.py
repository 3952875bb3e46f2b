"""Benchmarks and experiments; `python -m bench` reruns them and rewrites
BENCHMARKS.md (see bench/runner.py)."""
