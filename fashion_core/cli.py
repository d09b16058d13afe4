"""Command line: ``python -m fashion_core train ...`` and ``python -m fashion_core info``.

Errors the user can fix (a bad value, missing or corrupt data, an absent device, a loss
that diverged) print one line, ``error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fashion_core.config import PRECISIONS, TrainConfig
from fashion_core.files import write_atomic

EPILOG_TRAIN = """\
examples:
  python -m fashion_core train                       # the tutorial: MLP, batch 128, 20 epochs
  python -m fashion_core train --model cnn --epochs 15
  python -m fashion_core train --precision mixed_bfloat16 --batch-size 1024 --json run.json
  FASHION_MNIST_DIR=~/data/fashion python -m fashion_core train --device gpu:1

data is looked up in: --data-dir or $FASHION_MNIST_DIR (authoritative when given), then
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), then
~/.keras/datasets/fashion-mnist; --download lets Keras fetch it as a last resort.
The framework is Keras's backend: set KERAS_BACKEND=tensorflow (default), jax or torch.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_core",
        description="Train and evaluate the Fashion-MNIST tutorial's classifier, fast.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a model and report each epoch",
        description="Train on the 60,000 training images; after each epoch print its time, "
                    "throughput, mean loss, the tutorial's MSE and the test accuracy.",
        epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--model", default="mlp",
                       help="mlp (the tutorial's 784-256-128-64-32-10) or cnn (two conv "
                            "blocks); default: %(default)s")
    train.add_argument("--epochs", type=_positive_int, default=20,
                       help="passes over the training set; default: %(default)s")
    train.add_argument("--batch-size", type=_positive_int, default=128,
                       help="samples per optimizer step, 1 to 60000; default: %(default)s")
    train.add_argument("--precision", default="float32",
                       help=f"{', '.join(PRECISIONS)} (or fp32, fp16, bf16); float16 uses "
                            "dynamic loss scaling; default: %(default)s")
    train.add_argument("--device", default="cpu",
                       help="cpu, gpu (the first GPU) or gpu:N; `info` lists them; "
                            "default: %(default)s")
    train.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the whole train step (XLA for TensorFlow and JAX, "
                            "torch.compile for PyTorch); default: on, except for the CNN on "
                            "a CPU, where XLA's convolutions are far slower, and for "
                            "PyTorch on a CPU")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds weights and shuffling; same seed, same run; "
                            "default: %(default)s")
    train.add_argument("--learning-rate", type=float, default=1e-3,
                       help="Adam's learning rate; default: %(default)s")
    train.add_argument("--json", metavar="PATH",
                       help="also write the run (config, every epoch, final accuracy) as "
                            "JSON to PATH")
    train.add_argument("--strategy", choices=("none", "mirrored", "multiworker"),
                       default="none",
                       help="data-parallel training with tf.distribute: mirrored (N devices "
                            "of this process: GPUs, or logical CPUs) or multiworker "
                            "(processes/hosts named by TF_CONFIG); --batch-size is then per "
                            "replica; default: %(default)s")
    train.add_argument("--replicas", type=_positive_int, default=None,
                       help="devices for --strategy mirrored; default: 1")
    _data_options(train)
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar within each epoch (default: on when stderr is "
                            "a terminal); it splits an epoch into 10 compiled calls")

    info = commands.add_parser("info", help="print devices, versions and where the data is",
                               description="Print the devices the backend sees, framework "
                                           "versions, and where Fashion-MNIST was found.")
    _data_options(info)
    return parser


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with the four IDX .gz files (else $FASHION_MNIST_DIR, "
                             "then the usual places)")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept files whose content differs from the published "
                             "dataset (warns); for modified copies only")
    parser.add_argument("--download", action="store_true",
                        help="if no local copy exists, let Keras download the dataset")


def _load_data(args):
    from fashion_core import data

    return data.load(args.data_dir, verify=not args.no_verify, download=args.download)


def cmd_train(args) -> int:
    from fashion_core import train as training
    from fashion_core.config import ConfigError
    from fashion_core.progress import ProgressBar

    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         precision=args.precision, device=args.device, jit=args.jit,
                         seed=args.seed, learning_rate=args.learning_rate)
    if args.json:  # fail before training, not after, if the JSON cannot be written
        parent = Path(args.json).expanduser().resolve().parent
        if parent.exists() and not os.access(parent, os.W_OK):
            raise PermissionError(f"cannot write {args.json}: {parent} is not writable")
    dataset = _load_data(args)
    bar = ProgressBar(config.epochs)
    if args.progress is not None:
        bar.enabled = args.progress
    print(f"data: {dataset.source}", flush=True)
    if args.strategy == "none":
        if args.replicas:
            raise ConfigError("--replicas goes with --strategy mirrored")
        trainer = training.make_trainer(config, dataset)
    else:
        from fashion_core import distributed

        trainer = distributed.make_trainer(config, dataset, args.strategy, args.replicas)
    batch = f"batch {config.batch_size}"
    if args.strategy != "none":
        batch += f" a replica x {trainer.replicas} replicas ({args.strategy})"
    print(f"{config.model} on {trainer.device.name} ({trainer.device.model}), {batch}, "
          f"{config.precision}, XLA {'on' if trainer.jit else 'off'}, "
          f"{trainer.steps_per_epoch} steps an epoch", flush=True)

    def on_epoch(e) -> None:
        bar.clear()
        print(f"epoch {e.epoch:3d}/{config.epochs}  {e.seconds:7.3f} s  "
              f"{e.samples_per_second:10,.0f} samples/s  loss {e.loss:.4f}  "
              f"mse {e.mse:.4f}  test acc {e.test_accuracy:.4f}", flush=True)

    result = training.train(config, dataset, trainer=trainer,
                            chunks=10 if bar.enabled else 1, progress=bar, on_epoch=on_epoch)
    steady = training.median_epoch_seconds(result)
    print(f"done: test accuracy {result.test_accuracy:.4f} after {len(result.epochs)} "
          f"epochs; compile {result.compile_seconds:.2f} s; median epoch {steady:.3f} s "
          f"({trainer.samples_per_epoch / steady:,.0f} samples/s); "
          f"wall {result.wall_seconds:.1f} s")
    if args.json:
        write_atomic(Path(args.json).expanduser(),
                     json.dumps(result.as_record(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_info(args) -> int:
    from fashion_core import backends, data

    backend = backends.current()
    for key, value in backend.versions().items():
        print(f"{key}: {value}")
    print("devices:")
    for device in backend.list_devices():
        extra = f", compute capability {device.compute_capability}" \
            if device.compute_capability else ""
        print(f"  {device.name}: {device.kind}, {device.model}{extra}")
    try:
        dataset = _load_data(args)
        print(f"data: {dataset.source} ({len(dataset.x_train)} train, "
              f"{len(dataset.x_test)} test images, checksums "
              f"{'skipped' if args.no_verify else 'verified'})")
    except data.DataError as e:
        print(f"data: not usable: {e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Keep TensorFlow's start-up log lines (CUDA probing, CPU features) off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fashion_core.backends import DeviceError
    from fashion_core.config import ConfigError
    from fashion_core.data import DataError

    handled = (ConfigError, DataError, DeviceError, FloatingPointError, OSError)
    if getattr(args, "strategy", "none") != "none":
        from fashion_core.distributed import ScaleOutError

        handled += (ScaleOutError,)
    try:
        return cmd_train(args) if args.command == "train" else cmd_info(args)
    except handled as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
