"""The command line end to end on a tiny dataset folder, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fashion_core import cli, data


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
    record = json.loads(out.read_text())
    for key in ("model", "batch_size", "precision", "device", "test_accuracy", "epochs"):
        assert key in record
    assert record["model"] == "mlp" and record["batch_size"] == 64
    assert record["precision"] == "float32" and record["device"] == "cpu"
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    for epoch in record["epochs"]:
        assert set(epoch) >= {"epoch", "seconds", "samples_per_second", "loss", "mse",
                              "test_accuracy"}
        assert epoch["seconds"] > 0 and 0 <= epoch["test_accuracy"] <= 1
    assert record["test_accuracy"] == record["epochs"][-1]["test_accuracy"]


def test_info_lists_devices_versions_and_data(tiny_env, capsys):
    assert cli.main(["info", "--no-verify"]) == 0
    text = capsys.readouterr().out
    assert "tensorflow:" in text and "keras:" in text and "  cpu: CPU" in text
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


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--epochs", "-1"],
                                  ["--batch-size", "abc"]])
def test_argument_errors(args, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be positive" in err or "is not a whole number" in err


def test_missing_data_folder_no_traceback(tmp_path):
    """Run as a user would: a separate process, one error line, no traceback."""
    env = dict(os.environ, FASHION_MNIST_DIR=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "train", "--epochs", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'nowhere'}: missing train-images-idx3-ubyte.gz" in proc.stderr


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
