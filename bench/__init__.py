"""Benchmarks of the memif data path (``make bench``, ``python -m bench``); see bench/README.md."""
