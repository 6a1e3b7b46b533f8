"""Benchmarks (`make bench`): measured side by side in one run, printed as one table."""
