"""Side-by-side benchmarks of nerve against the seed article's toy bus (``bench.memory_bus``)."""
