"""Benchmarks (``python -m lmcore bench ...`` and ``python -m lmcore.bench.load``); BENCHMARKS.md
records their figures."""
