"""Studies and checks with a ``main`` of their own: ``python -m bench.tools.noise`` (the
run-to-run noise study), ``python -m bench.tools.hardware_check`` (CI's comparison of two
hardware configurations), ``python -m bench.tools.memory_check`` (bounded memory over a
long run)."""
