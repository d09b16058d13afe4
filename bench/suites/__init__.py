"""The benchmark suites (``pytest bench --benchmark-only`` collects them): training
epochs, inference throughput and latency, time to accuracy, compile time, reference
loops and data-parallel scaling. Each test takes a case of the matrix and the fixtures of
:mod:`bench.harness.plugin`."""
