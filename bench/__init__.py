"""fashion-bench's benchmark suites (pytest-benchmark) and the report."""
