"""Benchmarks of the generation path: `python -m bench.run` (what `make bench` runs)."""
