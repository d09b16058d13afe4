"""Two bench sessions taking turns, one timed round each: BASE, HEAD, BASE, HEAD, ...

``python -m bench.ab`` starts the BASE and the HEAD session together and points both at
one folder (``FASHION_BENCH_TURNS``, and ``FASHION_BENCH_TURN_SIDE`` saying which side a
session is). Only the side whose turn it is runs: calibration, compiling, the untimed
work of the suites and one timed round; then, in the untimed setup of its next round,
it hands the turn over and sleeps until the turn comes back. The two sessions' rounds
of a case are thus a second or two apart instead of a whole run apart, and slow drift of
the machine (what its other tenants do, thermal state) falls on both sides alike.

The folder holds a FIFO per side (the turn passes as a byte), ``<side>.ready`` (that
session has started: neither runs before both have, so no start-up work overlaps a
timed round) and ``<side>.done``. A side that is done, or whose process has ended, no
longer takes turns: the other runs on alone. A bench session never says it is done
itself: bench.ab writes ``<side>.done`` once the process has ended (TensorFlow's
teardown at exit takes seconds of CPU, which must not overlap the other side's rounds).
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

from bench.store.journal import process_alive
from fashion_core.files import write_atomic

#: The hand-over protocol's version: bench.ab takes turns only with revisions whose
#: package says the same (``bench.TURNS_PROTOCOL``; else whole runs alternate).
PROTOCOL = 2
SIDES = ("base", "head")
ENV_FOLDER, ENV_SIDE = "FASHION_BENCH_TURNS", "FASHION_BENCH_TURN_SIDE"
#: How often a waiting side looks whether the other is still there (it sleeps in the
#: kernel in between: a waiting side costs the running one no CPU).
CHECK_SECONDS = 0.5
#: A side that has not started after this long is taken as gone (its start failed).
START_TIMEOUT = 600.0


#: Asked of another revision's checkout, run there: the protocol its package exports
#: (``bench.TURNS_PROTOCOL``; before that existed, ``PROTOCOL`` of the module
#: ``bench.turns`` older revisions have), 0 for none.
_ASK = """\
import os, sys
import bench
if not os.path.realpath(bench.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep):
    print(0)  # not that checkout's package
    raise SystemExit
protocol = getattr(bench, "TURNS_PROTOCOL", None)
if protocol is None:
    try:
        import bench.turns
        protocol = bench.turns.PROTOCOL
    except (ImportError, AttributeError):
        protocol = 0
print(protocol)
"""


def protocol_of(tree: Path, python: str | None = None) -> int:
    """The turn-taking protocol the revision checked out at ``tree`` speaks, asked of its
    own package in a process of its own (0: none, or it could not answer)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(tree)
    try:
        # -S: no site-packages, so an installed copy of the project cannot answer for it;
        # -B: no bytecode written, so a checkout edited within a second is read afresh.
        done = subprocess.run([python or sys.executable, "-S", "-B", "-c", _ASK, str(tree)],
                              cwd=tree, env=env,
                              capture_output=True, text=True, timeout=120)
        return int(done.stdout.strip()) if done.returncode == 0 else 0
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


def speaks_protocol(tree: Path) -> bool:
    """Whether the revision checked out at ``tree`` takes turns as this one does."""
    return protocol_of(tree) == PROTOCOL


class Turns:
    """One side's view of the turn folder.

    The turn passes as one byte written into the other side's FIFO (``to-base``,
    ``to-head``); a side waits for its turn in a blocking read of its own, so the
    hand-over costs microseconds and the sleeper no CPU at all.
    """

    def __init__(self, folder: Path | str, side: str) -> None:
        if side not in SIDES:
            raise ValueError(f"{ENV_SIDE} must be one of {', '.join(SIDES)}, not {side!r}")
        self.folder = Path(folder)
        self.side = side
        self.other = SIDES[1 - SIDES.index(side)]
        self._started = time.monotonic()
        self._inbox = self._outbox = None

    @classmethod
    def from_environment(cls) -> Turns | None:
        folder = os.environ.get(ENV_FOLDER)
        return cls(folder, os.environ.get(ENV_SIDE, "")) if folder else None

    @staticmethod
    def prepare(folder: Path | str) -> None:
        """Make an empty turn folder (BASE moves first)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in [f"{s}.{k}" for s in SIDES for k in ("ready", "done")]:
            (folder / name).unlink(missing_ok=True)
        for side in SIDES:
            fifo = folder / f"to-{side}"
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)

    # -- state of the other side -------------------------------------------------------
    def _other_gone(self) -> bool:
        if (self.folder / f"{self.other}.done").exists():
            return True
        ready = self.folder / f"{self.other}.ready"
        try:
            pid = int(ready.read_text(encoding="ascii"))
        except (OSError, ValueError):  # not started (yet): gone only after a long while
            return time.monotonic() - self._started > START_TIMEOUT
        return not process_alive(pid)

    def _open(self) -> None:
        # O_RDWR: opening a FIFO so never blocks (Linux), and a byte written stays in it
        # while either side holds it open.
        self._inbox = os.open(self.folder / f"to-{self.side}", os.O_RDWR)
        self._outbox = os.open(self.folder / f"to-{self.other}", os.O_RDWR)

    def wait(self) -> None:
        """Until the other side hands the turn over, finishes or is gone."""
        while True:
            ready, _, _ = select.select([self._inbox], [], [], CHECK_SECONDS)
            if ready:
                os.read(self._inbox, 1)
                break
            if self._other_gone():
                break

    # -- the protocol ---------------------------------------------------------------------
    def start(self) -> None:
        """Say this side has started; BASE waits for HEAD to start, HEAD for its turn."""
        self._started = time.monotonic()
        self._open()
        _write(self.folder / f"{self.side}.ready", str(os.getpid()))
        if self.side == SIDES[0]:
            while not ((self.folder / f"{self.other}.ready").exists()
                       or self._other_gone()):
                time.sleep(0.05)
        else:
            self.wait()

    def hand_over(self) -> None:
        """Give the turn to the other side and wait for it to come back."""
        if self._other_gone():
            return
        os.write(self._outbox, b"t")
        self.wait()

    def finish(self) -> None:
        """This side is done: the other runs on alone (woken if it waits)."""
        _write(self.folder / f"{self.side}.done", str(os.getpid()))
        try:
            if self._outbox is None:
                self._open()
            os.write(self._outbox, b"t")
        except OSError:  # the folder is gone: nobody waits any more
            pass


def _write(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (a reader sees the old or the new text)."""
    write_atomic(path, text)
