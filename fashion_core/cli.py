"""Command line: ``python -m fashion_core train ...`` and ``python -m fashion_core info``.

Errors the user can fix (a bad value, missing or corrupt data, an absent device, no
framework installed, a loss that diverged) print one line, ``error: ...``, and exit with
status 2; no traceback. Everything that can be checked without the data or a framework
(every option's value, the backend, the ``--json`` destination) is checked before the
data is loaded, so a typo costs seconds, not a training run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fashion_core import backends, logs
from fashion_core.config import PRECISIONS, SEED_RANGE, ConfigError, TrainConfig, tf_config
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
The framework is Keras's backend: KERAS_BACKEND=tensorflow, jax or torch; where it is
unset, the first of those that is installed (the first line of output says which, and why).
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in this command's form: one ``error:`` line, status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    train.add_argument("--device", default="auto",
                       help="auto (the first GPU, else the CPU), cpu, gpu (the first GPU) "
                            "or gpu:N; `info` lists them; the device used is printed and "
                            "recorded in --json; default: %(default)s")
    train.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the whole train step (XLA for TensorFlow and JAX, "
                            "torch.compile for PyTorch); default: on, except for the CNN on "
                            "a CPU, where XLA's convolutions are far slower, and for "
                            "PyTorch on a CPU")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds weights and shuffling, {} to {}; same seed, same run; "
                            "default: %(default)s".format(*SEED_RANGE))
    train.add_argument("--learning-rate", type=float, default=1e-3,
                       help="Adam's learning rate; default: %(default)s")
    train.add_argument("--json", metavar="PATH",
                       help="also write the run (config, device used, every epoch, final "
                            "accuracy) as JSON to PATH; its folder is created, and checked "
                            "writable before training")
    train.add_argument("--strategy", choices=("none", "mirrored", "multiworker"),
                       default="none",
                       help="data-parallel training with tf.distribute (TensorFlow backend "
                            "only): mirrored (N devices of this process: GPUs, or logical "
                            "CPUs) or multiworker (processes/hosts named by TF_CONFIG); "
                            "--batch-size is then per replica; default: %(default)s")
    train.add_argument("--replicas", type=_positive_int, default=None,
                       help="devices for --strategy mirrored; default: 1")
    _data_options(train)
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar within each epoch (default: on when stderr is "
                            "a terminal); it splits an epoch into 10 compiled calls")

    info = commands.add_parser("info", help="print the backend, devices, versions and where "
                                             "the data is",
                               description="Print which backend is used and why, framework "
                                           "versions, the devices the backend sees (and what "
                                           "to install where it has no GPU support), and "
                                           "where Fashion-MNIST was found.")
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


def check_json_destination(text: str) -> Path:
    """The path ``--json`` names, made ready: its folder exists and takes a test write.

    ConfigError (one line) where it names a folder, where a file stands in the way of
    its folder, or where the folder cannot be created or written.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"--json {text}: is a folder; name a file, e.g. "
                          f"{Path(text) / 'run.json'}")
    folder = path.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--json {text}: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".test"):
            pass
    except OSError as e:
        raise ConfigError(f"--json {text}: cannot write in {folder}: "
                          f"{e.strerror or e}") from None
    return path


def check_train_args(args) -> TrainConfig:
    """Everything about a ``train`` command that can be checked before loading data.

    Returns the run's config; raises ConfigError or BackendError, whose message is the
    one line to print.
    """
    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         precision=args.precision, device=args.device, jit=args.jit,
                         seed=args.seed, learning_rate=args.learning_rate)
    if args.replicas and args.strategy != "mirrored":
        raise ConfigError("--replicas goes with --strategy mirrored (multiworker takes its "
                          "workers from TF_CONFIG)")
    choice = backends.backend_choice()
    choice.check()
    if args.strategy != "none" and choice.name != "tensorflow":
        raise ConfigError(
            f"--strategy {args.strategy} uses tf.distribute, which needs the TensorFlow "
            f"backend; this run's backend is {choice.describe()}: "
            + ("set KERAS_BACKEND=tensorflow" if backends.installed("tensorflow")
               else "pip install 'fashion-bench[tensorflow]'"))
    if args.strategy == "multiworker":
        try:
            tf_config(required=True)
        except ConfigError as e:  # "--strategy multiworker needs ..." where it is unset
            raise ConfigError(f"--strategy {e}" if str(e).startswith("multiworker")
                              else str(e)) from None
    if args.data_dir and Path(args.data_dir).expanduser().is_file():
        raise ConfigError(f"--data-dir {args.data_dir}: is a file; name the folder that "
                          "holds the four IDX .gz files")
    if args.json:
        check_json_destination(args.json)
    return config


def _device_note(requested: str, device) -> str:
    """' [auto: the first GPU]' where --device auto picked the device, else ''."""
    if requested != backends.AUTO:
        return ""
    return " [auto: the first GPU]" if device.kind == "GPU" else " [auto: no GPU found]"


def cmd_train(args) -> int:
    config = check_train_args(args)
    print(f"backend: {backends.backend_choice().describe()}", flush=True)
    from fashion_core import train as training
    from fashion_core.progress import ProgressBar

    dataset = _load_data(args)
    bar = ProgressBar(config.epochs)
    if args.progress is not None:
        bar.enabled = args.progress
    print(f"data: {dataset.source}", flush=True)
    if args.strategy == "none":
        trainer = training.make_trainer(config, dataset)
    else:
        from fashion_core.backends import tf_distributed

        trainer = tf_distributed.make_trainer(config, dataset, args.strategy, args.replicas)
    batch = f"batch {config.batch_size}"
    if args.strategy != "none":
        batch += f" a replica x {trainer.replicas} replicas ({args.strategy})"
    print(f"{config.model} on {trainer.device.name} ({trainer.device.model})"
          f"{_device_note(config.device, trainer.device)}, {batch}, "
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


def nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver reports a GPU (a cheap look at /proc and /dev)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    except OSError:
        pass
    return Path("/dev/nvidia0").exists()


def _jax_cuda_plugin() -> bool:
    return any(backends.module_found(name)
               for name in ("jax_cuda13_plugin", "jax_cuda12_plugin"))


def gpu_support_note(backend: str, versions: dict, devices: list, nvidia_present: bool,
                     jax_plugin: bool = False) -> str | None:
    """One line on why the backend sees no GPU and what to install; None if it sees one.

    ``versions`` is the backend's ``versions()`` (its "cuda" is None for a build without
    CUDA); ``jax_plugin`` says whether a JAX CUDA plugin is installed.
    """
    if any(d.kind == "GPU" for d in devices):
        return None
    label = backends.LABELS[backend]
    driver = ("an NVIDIA GPU is present" if nvidia_present
              else "no NVIDIA driver found on this machine")
    cuda = versions.get("cuda")
    if backend == "torch" and cuda is None:
        return (f"gpu: none visible; this torch is a CPU-only build ({driver}); for NVIDIA "
                "GPUs install a CUDA build (on Linux, PyPI's plain `pip install torch`; "
                "see https://pytorch.org/get-started/locally/)")
    if cuda is None and not (backend == "jax" and jax_plugin):
        what = ("jaxlib has no CUDA plugin" if backend == "jax"
                else f"this {label} build has no CUDA support")
        return (f"gpu: none visible; {what} ({driver}); for NVIDIA GPUs: "
                f"pip install 'fashion-bench[{backends.GPU_EXTRAS[backend]}]'")
    built = f"built for CUDA {cuda}" if cuda else "with a CUDA plugin"
    if not nvidia_present:
        return f"gpu: none; no NVIDIA driver found on this machine ({label} is {built})"
    hint = "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
    if backend == "tensorflow" and not backends.module_found("nvidia.cudnn"):
        hint += "; TensorFlow's CUDA libraries: pip install 'fashion-bench[tensorflow-gpu]'"
    return f"gpu: none visible to {label} ({built}), though an NVIDIA GPU is present; {hint}"


def cmd_info(args) -> int:
    from fashion_core import data

    choice = backends.backend_choice()
    print(f"backend: {choice.describe()}")
    status = 0
    if choice.problem:
        status = 2
    else:
        backend = backends.current()
        versions = backend.versions()
        for key, value in versions.items():
            if key != "backend":  # said above
                print(f"{key}: {value}")
        devices = backend.list_devices()
        print("devices:")
        for device in devices:
            extra = f", compute capability {device.compute_capability}" \
                if device.compute_capability else ""
            print(f"  {device.name}: {device.kind}, {device.model}{extra}")
        note = gpu_support_note(choice.name, versions, devices, nvidia_gpu_present(),
                                jax_plugin=choice.name == "jax" and _jax_cuda_plugin())
        if note:
            print(note)
    try:
        dataset = _load_data(args)
        print(f"data: {dataset.source} ({len(dataset.x_train)} train, "
              f"{len(dataset.x_test)} test images, checksums "
              f"{'skipped' if args.no_verify else 'verified'})")
    except data.DataError as e:
        print(f"data: not usable: {e}")
    return status


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix: printed as one line, status 2."""
    from fashion_core.data import DataError

    errors = (backends.BackendError, ConfigError, DataError, backends.DeviceError,
              FloatingPointError, OSError)
    # Imported only for --strategy (it imports TensorFlow).
    distributed = sys.modules.get("fashion_core.backends.tf_distributed")
    if distributed is not None:
        errors += (distributed.ScaleOutError,)
    return errors


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Keep TensorFlow's C++ start-up log (CUDA probing, CPU features) off the terminal,
    # unless TF_CPP_MIN_LOG_LEVEL says otherwise.
    logs.quiet_tensorflow_log()
    try:
        return cmd_train(args) if args.command == "train" else cmd_info(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
