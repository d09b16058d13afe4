"""fashion-bench's benchmark suites (pytest-benchmark), the harness and the report.

What another revision of the project is asked by ``python -m bench.ab`` (in a process
run in that revision's checkout), so that nothing depends on where a module lies:
"""

#: The turn-taking protocol of :mod:`bench.harness.turns` this revision speaks.
TURNS_PROTOCOL = 2
