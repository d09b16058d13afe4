"""The harness inside a pytest session: the plugin's hooks, its options, the matrix of
cases, the plan and the budget, when a case has measured enough, the run's state and its
result file, the child processes it starts, the progress it shows and the closing table.

``bench/conftest.py`` loads :mod:`bench.harness.plugin`; nothing here imports a framework
at import time except through the plugin (which picks the Keras backend first).
"""
