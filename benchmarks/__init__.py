"""Speed and memory benchmarks of the evaluation pipeline (pytest-benchmark; not part of the test suite)."""
