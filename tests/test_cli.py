"""The command line end to end on a tiny dataset folder, and its one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from fashion_core import backends, cli, data, logs
from fashion_core.backends import BackendChoice, DeviceInfo


@pytest.fixture
def tiny_env(monkeypatch, tiny_dir):
    monkeypatch.setenv(data.ENV_VAR, str(tiny_dir))
    return tiny_dir


def test_train_end_to_end_writes_json(tiny_env, tmp_path, capsys):
    out = tmp_path / "runs" / "run.json"
    code = cli.main(["train", "--epochs", "2", "--batch-size", "64", "--no-verify",
                     "--json", str(out), "--seed", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "epoch   1/2" in text and "epoch   2/2" in text and "done: test accuracy" in text
    choice = backends.backend_choice()
    assert text.splitlines()[0] == f"backend: {choice.describe()}"
    # --device auto (the default): the first GPU, else the CPU; printed and recorded.
    used = backends.resolve_device("auto", backends.current().list_devices())
    assert f"mlp on {used.name} ({used.model}) [auto: " in text
    record = json.loads(out.read_text())
    for key in ("model", "batch_size", "precision", "device", "test_accuracy", "epochs"):
        assert key in record
    assert record["model"] == "mlp" and record["batch_size"] == 64
    assert record["precision"] == "float32" and record["device"] == used.name
    assert record["backend"] == choice.name
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    for epoch in record["epochs"]:
        assert set(epoch) >= {"epoch", "seconds", "samples_per_second", "loss", "mse",
                              "test_accuracy"}
        assert epoch["seconds"] > 0 and 0 <= epoch["test_accuracy"] <= 1
    assert record["test_accuracy"] == record["epochs"][-1]["test_accuracy"]


def test_info_lists_backend_devices_versions_and_data(tiny_env, capsys):
    assert cli.main(["info", "--no-verify"]) == 0
    text = capsys.readouterr().out
    choice = backends.backend_choice()
    assert text.splitlines()[0] == f"backend: {choice.describe()}"
    assert "keras:" in text and "  cpu: CPU" in text
    assert f"data: {tiny_env}" in text


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet"], "error: unknown model 'resnet'"),
    (["--precision", "fp8"], "error: unknown precision 'fp8'"),
    (["--device", "gpu:3"], "error: device 'gpu:3' is not there; devices found: cpu"),
    (["--device", "tpu"], "error: unknown device 'tpu'"),
    (["--batch-size", "100000"], "error: batch_size 100000 is larger than the 300"),
    ([], "error: "),  # without --no-verify the tiny files fail their checksum
    (["--learning-rate", "1e30"], "error: loss became non-finite at epoch 1, step"),
])
def test_errors_are_one_line(tiny_env, capsys, args, message):
    base = ["train", "--epochs", "1", "--batch-size", "64"]
    if args:
        base.append("--no-verify")
    assert cli.main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "error: seed must be a whole number from 0 to 4294967295"),
    (["--seed", str(2**32)], "error: seed must be a whole number from 0 to 4294967295"),
    (["--learning-rate", "inf"], "error: learning_rate must be positive and finite, not inf"),
    (["--learning-rate", "nan"], "error: learning_rate must be positive and finite, not nan"),
    (["--device", "tpu"], "error: unknown device 'tpu'; write auto, cpu, gpu or gpu:N"),
    (["--replicas", "2"], "error: --replicas goes with --strategy mirrored"),
    (["--strategy", "multiworker", "--replicas", "2"],
     "error: --replicas goes with --strategy mirrored"),
])
def test_bad_values_fail_before_the_data_is_loaded(monkeypatch, capsys, args, message):
    """Checked up front: the data loader must not even be reached."""
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    assert cli.main(["train", *args]) == 2
    out, err = capsys.readouterr()
    assert err.strip().startswith(message) and "\n" not in err.strip(), err
    assert out == ""


def _must_not_load(args):
    raise AssertionError("the data was loaded before the options were checked")


@pytest.mark.tensorflow_only
def test_multiworker_without_tf_config_fails_before_the_data(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(["train", "--strategy", "multiworker"]) == 2
    assert capsys.readouterr().err.startswith("error: --strategy multiworker needs TF_CONFIG")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert cli.main(["train", "--strategy", "multiworker"]) == 2
    assert capsys.readouterr().err.startswith("error: TF_CONFIG is not valid JSON")


def test_strategy_needs_the_tensorflow_backend(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    monkeypatch.setattr(backends, "_CHOICE", BackendChoice(
        "jax", "KERAS_BACKEND is unset and TensorFlow is not installed", True))
    monkeypatch.setattr(backends, "installed", lambda name: name != "tensorflow")
    assert cli.main(["train", "--strategy", "mirrored"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --strategy mirrored uses tf.distribute, which needs the TensorFlow "
                   "backend; this run's backend is jax (KERAS_BACKEND is unset and TensorFlow "
                   "is not installed): pip install 'fashion-bench[tensorflow]'")


def test_no_usable_backend_is_one_line_before_the_data(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    problem = "KERAS_BACKEND=jax, but JAX is not installed: pip install 'fashion-bench[jax]'"
    monkeypatch.setattr(backends, "_CHOICE",
                        BackendChoice(None, "KERAS_BACKEND=jax", False, problem))
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err == f"error: {problem}\n"


def test_json_naming_a_folder_fails_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    assert cli.main(["train", "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --json {tmp_path}: is a folder; name a file, "
                                       f"e.g. {tmp_path / 'run.json'}\n")


def test_json_under_a_file_fails_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder would go")
    assert cli.main(["train", "--json", str(blocker / "runs" / "run.json")]) == 2
    assert capsys.readouterr().err == (f"error: --json {blocker / 'runs' / 'run.json'}: "
                                       f"{blocker} is a file, not a folder\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_json_in_a_read_only_folder_fails_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert cli.main(["train", "--json", str(folder / "run.json")]) == 2
    finally:
        folder.chmod(0o700)
    assert capsys.readouterr().err.startswith(f"error: --json {folder / 'run.json'}: cannot "
                                              f"write in {folder}: Permission denied")


def test_json_destination_is_made_ready_and_the_test_write_leaves_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "run.json"
    assert cli.check_json_destination(str(target)) == target
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []


def test_data_dir_naming_a_file_fails_before_loading(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_load_data", _must_not_load)
    archive = tmp_path / "fashion.tar"
    archive.write_bytes(b"")
    assert cli.main(["train", "--data-dir", str(archive)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --data-dir {archive}: is a file")


def test_bad_seed_in_a_fresh_process_is_one_line_within_seconds():
    """As a user meets it: no traceback, exit 2, and no framework started for nothing."""
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "train", "--seed", "-1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == ("error: seed must be a whole number from 0 to 4294967295 "
                           "(2**32 - 1), not -1\n")
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--epochs", "-1"],
                                  ["--batch-size", "abc"]])
def test_argument_errors(args, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument ") and err.count("\n") == 1, err
    assert "must be positive" in err or "is not a whole number" in err
    assert err.endswith("(see python -m fashion_core train --help)\n")


def test_gpu_support_note_names_the_missing_extra():
    cpu = [DeviceInfo("cpu", "CPU", "AMD EPYC")]
    gpu = cpu + [DeviceInfo("gpu:0", "GPU", "NVIDIA H100")]
    note = cli.gpu_support_note
    assert note("jax", {"cuda": None}, gpu, True) is None
    assert note("jax", {"cuda": None}, cpu, True) == (
        "gpu: none visible; jaxlib has no CUDA plugin (an NVIDIA GPU is present); for NVIDIA "
        "GPUs: pip install 'fashion-bench[jax-cuda]'")
    assert "pip install 'fashion-bench[tensorflow-gpu]'" in note(
        "tensorflow", {"cuda": None}, cpu, False)
    assert "this torch is a CPU-only build" in note("torch", {"cuda": None}, cpu, True)
    assert note("tensorflow", {"cuda": "12.5.1"}, cpu, False) == (
        "gpu: none; no NVIDIA driver found on this machine (TensorFlow is built for CUDA "
        "12.5.1)")
    assert note("jax", {"cuda": None}, cpu, True, jax_plugin=True).startswith(
        "gpu: none visible to JAX (with a CUDA plugin), though an NVIDIA GPU is present; "
        "check the driver (nvidia-smi)")


def test_missing_data_folder_no_traceback(tmp_path):
    """Run as a user would: a separate process, one error line, no traceback."""
    env = dict(os.environ, FASHION_MNIST_DIR=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "train", "--epochs", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'nowhere'}: missing train-images-idx3-ubyte.gz" in proc.stderr


@pytest.mark.tensorflow_only
def test_info_prints_no_line_of_tensorflows_cpp_log(tiny_env):
    """A newcomer's first command, TF_CPP_MIN_LOG_LEVEL unset: our lines only, no
    "Could not find cuda drivers", absl warning or cuInit error from TensorFlow's C++."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    env = {k: v for k, v in os.environ.items() if k != logs.ENV_VAR}
    env["KERAS_BACKEND"] = "tensorflow"
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "info", "--no-verify"],
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
    native = [line for line in lines if logs.is_native_log_line(line.encode())
              or "cuInit" in line or "cuda drivers" in line or "absl" in line]
    assert native == []
    assert lines[0].startswith("backend: tensorflow")
    assert any(line.startswith("data: ") for line in lines)


def test_native_log_filter_keeps_every_other_line():
    assert logs.is_native_log_line(
        b"E0000 00:00:1796293884.975115    3228 cuda_platform.cc:52] failed call to cuInit")
    assert logs.is_native_log_line(
        b"I0000 00:00:1796293877.296119    3228 cudart_stub.cc:31] Could not find cuda")
    assert logs.is_native_log_line(b"W1203 10:31:10.123456  77 gpu_device.cc:2341] x")
    assert logs.is_native_log_line(b"WARNING: All log messages before absl::InitializeLog() "
                                   b"is called are written to STDERR\n")
    assert not logs.is_native_log_line(b"error: seed must be a whole number\n")
    assert not logs.is_native_log_line(b"Traceback (most recent call last):\n")
    # Through a real file descriptor: a child's C++-style line dropped, ours kept.
    code = ("import os, sys; from fashion_core import logs\n"
            "with logs.native_log_filtered():\n"
            "    os.write(2, b'E0000 00:00:17.1  9 cuda_platform.cc:52] cuInit\\n')\n"
            "    print('error: ours', file=sys.stderr)\n"
            "print('after', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == "error: ours\nafter\n"


def test_quiet_tensorflow_log_leaves_a_users_level_alone():
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert logs.quiet_tensorflow_log(environ, import_now=False) is False
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0"}
    environ = {}
    assert logs.quiet_tensorflow_log(environ, import_now=False) is True
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": logs.QUIET_LEVEL}


def test_help_explains_every_option():
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for option in ("--model", "--epochs", "--batch-size", "--precision", "--device",
                   "--jit", "--no-jit", "--seed", "--json", "--data-dir", "--no-verify"):
        assert option in proc.stdout


class _Terminal:
    """A stream that says it is a terminal, collecting what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_bar_draws_on_a_terminal_only():
    from fashion_core.progress import ProgressBar

    terminal = _Terminal()
    bar = ProgressBar(epochs=3, stream=terminal, width=10)
    bar(2, 0, 469)
    bar(2, 235, 469)
    assert "\repoch 2/3 [#####-----] 235/469 steps" in terminal.text
    bar.clear()
    assert terminal.text.endswith("\r")
    import io

    quiet = io.StringIO()  # not a terminal: nothing is drawn
    ProgressBar(epochs=1, stream=quiet)(1, 5, 10)
    assert quiet.getvalue() == ""
