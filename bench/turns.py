"""Two bench sessions taking turns, one timed round each: BASE, HEAD, BASE, HEAD, ...

``python -m bench.ab`` starts the BASE and the HEAD session together and points both at
one folder (``FASHION_BENCH_TURNS``, and ``FASHION_BENCH_TURN_SIDE`` saying which side a
session is). Only the side whose turn it is runs: calibration, compiling, the untimed
work of the suites and one timed round; then, in the untimed setup of its next round,
it hands the turn over and sleeps until the turn comes back. The two sessions' rounds
of a case are thus a second or two apart instead of a whole run apart, and slow drift of
the machine (what its other tenants do, thermal state) falls on both sides alike.

The folder holds ``turn`` (whose turn it is), ``<side>.ready`` (that session has
started: neither runs before both have, so no start-up work overlaps a timed round) and
``<side>.done``. A side that is done, or whose process died, no longer takes turns: the
other runs on alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SIDES = ("base", "head")
ENV_FOLDER, ENV_SIDE = "FASHION_BENCH_TURNS", "FASHION_BENCH_TURN_SIDE"
POLL_SECONDS = 0.002
#: A side that has not started after this long is taken as gone (its start failed).
START_TIMEOUT = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


class Turns:
    """One side's view of the turn folder."""

    def __init__(self, folder: Path | str, side: str) -> None:
        if side not in SIDES:
            raise ValueError(f"{ENV_SIDE} must be one of {', '.join(SIDES)}, not {side!r}")
        self.folder = Path(folder)
        self.side = side
        self.other = SIDES[1 - SIDES.index(side)]
        self.waited = 0.0  # seconds spent waiting for the other side
        self._started = time.monotonic()

    @classmethod
    def from_environment(cls) -> Turns | None:
        folder = os.environ.get(ENV_FOLDER)
        return cls(folder, os.environ.get(ENV_SIDE, "")) if folder else None

    @staticmethod
    def prepare(folder: Path | str) -> None:
        """Make an empty turn folder in which BASE moves first."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in [f"{s}.{k}" for s in SIDES for k in ("ready", "done")]:
            (folder / name).unlink(missing_ok=True)
        _write(folder / "turn", SIDES[0])

    # -- state of the other side -------------------------------------------------------
    def _other_gone(self) -> bool:
        if (self.folder / f"{self.other}.done").exists():
            return True
        ready = self.folder / f"{self.other}.ready"
        try:
            pid = int(ready.read_text(encoding="ascii"))
        except (OSError, ValueError):  # not started (yet): gone only after a long while
            return time.monotonic() - self._started > START_TIMEOUT
        return not _alive(pid)

    def _my_turn(self) -> bool:
        try:
            return (self.folder / "turn").read_text(encoding="ascii") == self.side
        except OSError:
            return False

    def _wait_until(self, ready) -> None:
        begin = time.perf_counter()
        while not ready():
            time.sleep(POLL_SECONDS)
        self.waited += time.perf_counter() - begin

    # -- the protocol ---------------------------------------------------------------------
    def start(self) -> None:
        """Say this side has started; wait for the other to start, then for our turn."""
        self._started = time.monotonic()
        _write(self.folder / f"{self.side}.ready", str(os.getpid()))
        self._wait_until(lambda: (self.folder / f"{self.other}.ready").exists()
                         or self._other_gone())
        self.wait()

    def wait(self) -> None:
        """Until it is this side's turn, or the other side is done or gone."""
        self._wait_until(lambda: self._my_turn() or self._other_gone())

    def hand_over(self) -> None:
        """Give the turn to the other side and wait for it to come back."""
        if not self._other_gone():
            _write(self.folder / "turn", self.other)
        self.wait()

    def finish(self) -> None:
        """This side is done: the other runs on alone."""
        _write(self.folder / f"{self.side}.done", str(os.getpid()))
        _write(self.folder / "turn", self.other)


def _write(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (a reader sees the old or the new text)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)
