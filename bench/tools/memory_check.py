"""Does a long matrix leak? Build, use and drop many trainers in one process; watch RSS.

``python -m bench.tools.memory_check`` runs the loop a full matrix runs: it builds an MLP
trainer, compiles it, trains 5 steps, predicts the test set, closes it and collects
garbage, for every batch size 32-4096, float32 and bfloat16, XLA (or torch.compile) on
and off: 32 trainers, on the backend Keras is configured with (``KERAS_BACKEND``). It
prints the process's resident memory after each and the growth from the 4th trainer to
the last (the first few pay for one-time setup: kernels, thread pools, the dataset on the
device).

Exit status 0 when the growth is within ``--max-growth`` (default 300 MiB), 1 when it
is not, 2 on bad input (no dataset, a bad option).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_GREW, EXIT_USAGE = 0, 1, 2
BATCH_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
PRECISIONS = ("float32", "mixed_bfloat16")
#: Trainers before the baseline: the first few pay for one-time setup.
WARM = 4


def plan(trainers: int) -> list[tuple[int, str, bool]]:
    """(batch size, precision, jit) of each trainer: every batch size in turn, each with
    the four precision/jit settings. The first four trainers build one of each kind, so
    what a framework sets up once per kind (op caches, kernels) is paid before the
    baseline, and what grows after it is what the trainers leave behind."""
    kinds = [(p, j) for j in (True, False) for p in PRECISIONS]
    order = [(b, p, j) for b in BATCH_SIZES for p, j in kinds]
    return [order[i % len(order)] for i in range(trainers)]


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def run(dataset, trainers: int, steps: int, device: str, out=None) -> list[dict]:
    """Build, use and drop ``trainers`` trainers; one row a trainer with RSS after it."""
    from fashion_core import train
    from fashion_core.config import TrainConfig

    out = out or sys.stdout  # looked up now: a caller may have replaced sys.stdout
    rows = []
    begin = time.monotonic()
    for index, (batch, precision, jit) in enumerate(plan(trainers), start=1):
        trainer = train.make_trainer(TrainConfig(batch_size=batch, precision=precision,
                                                 jit=jit, device=device), dataset)
        trainer.compile()
        trainer.set_order(np.arange(trainer.n_train))
        trainer.run_steps(0, min(steps, trainer.steps_per_epoch))
        trainer.predict_all("test")
        trainer.close()
        del trainer
        gc.collect()
        rss = rss_bytes()
        rows.append({"trainer": index, "batch_size": batch, "precision": precision,
                     "jit": jit, "rss_bytes": rss})
        print(f"memory_check: trainer {index:>3}/{trainers}  b{batch:<5} {precision:<15} "
              f"{'jit' if jit else 'nojit':<5}  RSS {rss / 2**20:7.0f} MiB  "
              f"({time.monotonic() - begin:.0f} s)", file=out, flush=True)
    return rows


def growth_mib(rows: list[dict]) -> float:
    """RSS after the last trainer minus RSS after the ``WARM``-th, in MiB."""
    base = rows[min(WARM, len(rows)) - 1]["rss_bytes"]
    return (rows[-1]["rss_bytes"] - base) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tools.memory_check", description=__doc__.split("\n\n")[1],
        epilog="example: KERAS_BACKEND=jax python -m bench.tools.memory_check --json mem.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", type=int, default=32, metavar="N",
                        help=f"trainers to build one after another (default 32; at least "
                             f"{WARM + 1})")
    parser.add_argument("--steps", type=int, default=5, metavar="N",
                        help="training steps per trainer (default 5)")
    parser.add_argument("--max-growth", type=float, default=300.0, metavar="MIB",
                        help="allowed RSS growth from trainer 4 to the last (default 300)")
    parser.add_argument("--device", default="cpu", help="device to train on (default cpu)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="Fashion-MNIST folder (default: as fashion_core finds it)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images of the real dataset's size instead of the files")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the rows and the growth to FILE")
    args = parser.parse_args(argv)
    if args.trainers <= WARM:
        parser.error(f"--trainers must be above {WARM} (the baseline is trainer {WARM})")
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    from fashion_core import backends, data

    try:
        dataset = (data.synthetic(train_size=60_000, test_size=10_000, seed=0)
                   if args.synthetic else data.load(args.data_dir))
    except data.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    backend = backends.current().NAME
    print(f"memory_check: backend {backend}, {args.trainers} MLP trainers on {args.device}, "
          f"RSS before the first {rss_bytes() / 2**20:.0f} MiB", flush=True)
    rows = run(dataset, args.trainers, args.steps, args.device)
    grew = growth_mib(rows)
    held = grew <= args.max_growth
    print(f"memory_check: RSS grew {grew:.0f} MiB from trainer {WARM} to trainer "
          f"{len(rows)} ({grew / (len(rows) - WARM):.1f} MiB a trainer); bound "
          f"{args.max_growth:.0f} MiB: {'held' if held else 'EXCEEDED'}")
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "device": args.device,
                                         "growth_mib": grew, "max_growth_mib": args.max_growth,
                                         "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK if held else EXIT_GREW


if __name__ == "__main__":
    sys.exit(main())
