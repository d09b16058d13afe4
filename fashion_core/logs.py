"""Keep TensorFlow's C++ start-up log off the terminal, unless the user asked for it.

Importing TensorFlow (2.16 and newer) writes lines from its C++ log before anything of
ours: "Could not find cuda drivers", oneDNN notes, absl's "All log messages before
absl::InitializeLog() is called are written to STDERR", and on a machine without a GPU
"failed call to cuInit: ... UNKNOWN ERROR (303)". ``TF_CPP_MIN_LOG_LEVEL`` alone does not
silence them: the lines written before absl's log is initialised ignore it (measured with
TensorFlow 2.21: levels 1, 2 and 3 all print them), and only level 3 drops the cuInit
error. So :func:`quiet_tensorflow_log`, where the user has not set
``TF_CPP_MIN_LOG_LEVEL``, sets it to 3 and imports TensorFlow with the C++ log's lines
filtered out of the process's stderr (file descriptor 2); every other line, Python's
warnings and tracebacks among them, passes through.

A user who wants the log back sets ``TF_CPP_MIN_LOG_LEVEL`` (``0`` shows everything):
then nothing here changes or filters anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import threading

ENV_VAR = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # 2 still lets the cuInit error through on a machine without a GPU

# A line of absl's (and glog's) log: severity letter, MMDD, time, thread id, file:line].
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.+-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")


def is_native_log_line(line: bytes) -> bool:
    """True for a line of TensorFlow's C++ log (absl format), False for anything else."""
    return NATIVE_LOG_LINE.match(line) is not None


@contextlib.contextmanager
def native_log_filtered(fd: int = 2):
    """Within the block, lines written to ``fd`` that :func:`is_native_log_line` drops.

    ``fd`` is pointed at a pipe that a thread reads line by line, writing on what is not
    a C++ log line to the original ``fd``; on leaving, ``fd`` is restored and every line
    written inside the block has been passed on (or dropped) before this returns.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not is_native_log_line(line):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    thread.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last write end: the thread reads EOF
        thread.join()
        os.close(saved)


def quiet_tensorflow_log(environ=None, import_now: bool | None = None) -> bool:
    """Keep TensorFlow's C++ log quiet, unless ``TF_CPP_MIN_LOG_LEVEL`` is set already.

    Call before anything imports TensorFlow (or Keras with the TensorFlow backend). Where
    ``TF_CPP_MIN_LOG_LEVEL`` is unset: sets it to 3 and, when the Keras backend is
    TensorFlow (``KERAS_BACKEND``, which ``import fashion_core`` sets) and TensorFlow is
    installed and not yet imported, imports it with its start-up lines filtered out
    (:func:`native_log_filtered`). Returns whether it changed anything; a user who set
    the variable (``TF_CPP_MIN_LOG_LEVEL=0`` shows the whole log) gets what they set.
    ``environ`` stands in for ``os.environ``, ``import_now`` for the backend test.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip():
        return False
    environ[ENV_VAR] = QUIET_LEVEL
    if import_now is None:
        import_now = (environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
                      and "tensorflow" not in sys.modules
                      and importlib.util.find_spec("tensorflow") is not None)
    if import_now:
        # A broken install fails again where the backend imports it, and says why there.
        with native_log_filtered(), contextlib.suppress(ImportError):
            import tensorflow  # noqa: F401
    return True
