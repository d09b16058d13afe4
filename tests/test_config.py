"""Run descriptions checked on construction; device names and "auto"; the backend choice.

The backend choice is made before Keras is imported (Keras reads KERAS_BACKEND once), so
what a process without TensorFlow does is tested in fresh subprocesses in which the
frameworks are hidden from the import system.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fashion_core import backends
from fashion_core.backends import BackendChoice, DeviceError, DeviceInfo, choose_backend
from fashion_core.config import SEED_RANGE, ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parent.parent

# -- config values -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40, 1.5, True])
def test_seed_outside_numpys_range_is_refused(seed):
    with pytest.raises(ConfigError, match=r"seed must be a whole number from 0 to 4294967295"):
        TrainConfig(seed=seed)


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seed_range_ends_are_accepted(seed):
    assert TrainConfig(seed=seed).seed == seed
    assert SEED_RANGE == (0, 2**32 - 1)


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), -1e-3, 0.0])
def test_learning_rate_must_be_positive_and_finite(rate):
    with pytest.raises(ConfigError, match="learning_rate must be positive and finite"):
        TrainConfig(learning_rate=rate)


def test_device_defaults_to_auto_and_is_normalised():
    assert TrainConfig().device == "auto"
    assert TrainConfig(device="AUTO").device == "auto"
    assert TrainConfig(device="/GPU:1").device == "gpu:1"
    with pytest.raises(ConfigError, match="unknown device 'tpu'; write auto, cpu, gpu or gpu:N"):
        TrainConfig(device="tpu")


# -- devices -------------------------------------------------------------------------------

CPU = DeviceInfo("cpu", "CPU", "AMD EPYC")
GPU0 = DeviceInfo("gpu:0", "GPU", "NVIDIA H100")
GPU1 = DeviceInfo("gpu:1", "GPU", "NVIDIA A100")


@pytest.mark.parametrize("devices, expected", [
    ([CPU], CPU),
    ([CPU, GPU0, GPU1], GPU0),
    ([CPU, GPU1, GPU0], GPU0),  # the lowest index, whatever the listing order
    ([CPU, GPU1], GPU1),
])
def test_auto_is_the_first_gpu_else_the_cpu(devices, expected):
    assert backends.resolve_device("auto", devices) == expected


def test_named_device_resolves_and_an_absent_one_lists_those_found():
    assert backends.resolve_device("GPU:1", [CPU, GPU0, GPU1]) == GPU1
    with pytest.raises(DeviceError, match=r"^device 'gpu:2' is not there; devices found: "
                                          r"cpu \(AMD EPYC\), gpu:0 \(NVIDIA H100\)$"):
        backends.resolve_device("gpu:2", [CPU, GPU0])


def test_parse_device_keeps_auto_for_resolve_device():
    assert backends.parse_device(" Auto ") == "auto"


# -- which backend: the decision, from given facts -----------------------------------------


def facts(*present):
    """An is_installed for choose_backend: Keras and the named frameworks are there."""
    return lambda name: name == "keras" or name in present


@pytest.fixture
def no_keras_json(tmp_path):
    return tmp_path / "keras.json"  # absent


def test_keras_backend_variable_wins(no_keras_json):
    choice = choose_backend({"KERAS_BACKEND": "torch"}, facts("tensorflow", "torch"),
                            no_keras_json)
    assert choice == BackendChoice("torch", "KERAS_BACKEND=torch", automatic=False)
    assert choice.check() == "torch"


@pytest.mark.parametrize("present, name, reason", [
    (("tensorflow", "jax", "torch"), "tensorflow", "the default; KERAS_BACKEND is unset"),
    (("jax", "torch"), "jax", "KERAS_BACKEND is unset and TensorFlow is not installed"),
    (("torch",), "torch", "KERAS_BACKEND is unset and neither TensorFlow nor JAX is installed"),
])
def test_unset_variable_picks_tensorflow_then_jax_then_torch(no_keras_json, present, name,
                                                             reason):
    choice = choose_backend({}, facts(*present), no_keras_json)
    assert (choice.name, choice.reason, choice.automatic, choice.problem) == (name, reason,
                                                                              True, None)
    assert choice.describe() == f"{name} ({reason})"


def test_no_framework_names_the_extras(no_keras_json):
    choice = choose_backend({}, facts(), no_keras_json)
    assert choice.name is None
    for extra in ("fashion-bench[tensorflow]", "[jax]", "[torch]"):
        assert extra in choice.problem
    with pytest.raises(backends.BackendError, match="no framework for Keras is installed"):
        choice.check()


def test_asked_for_backend_that_is_absent_says_what_to_install(no_keras_json):
    choice = choose_backend({"KERAS_BACKEND": "jax"}, facts("torch"), no_keras_json)
    assert choice.name is None
    assert choice.problem == ("KERAS_BACKEND=jax, but JAX is not installed: pip install "
                              "'fashion-bench[jax]', or set KERAS_BACKEND=torch (installed)")


def test_unsupported_backend_is_a_problem(no_keras_json):
    choice = choose_backend({"KERAS_BACKEND": "numpy"}, facts("tensorflow"), no_keras_json)
    assert "the 'numpy' backend is not supported" in choice.problem


def test_missing_keras_is_a_problem(no_keras_json):
    choice = choose_backend({}, lambda name: name == "tensorflow", no_keras_json)
    assert choice.problem == "Keras is not installed: pip install fashion-bench"


def test_keras_json_is_followed_only_where_its_framework_is_installed(tmp_path):
    path = tmp_path / "keras.json"
    path.write_text(json.dumps({"backend": "jax"}))
    choice = choose_backend({}, facts("tensorflow", "jax"), path)
    assert (choice.name, choice.reason, choice.automatic) == ("jax", f"{path} names it", False)
    # Keras writes "tensorflow" into the file on its first import; one file serves every
    # virtual environment, so a framework absent here is no choice.
    path.write_text(json.dumps({"backend": "tensorflow"}))
    assert choose_backend({}, facts("jax"), path).name == "jax"
    path.write_text(json.dumps({"backend": "torch"}))
    assert choose_backend({}, facts("tensorflow"), path).name == "tensorflow"
    path.write_text("{not json")
    assert choose_backend({}, facts("tensorflow"), path).name == "tensorflow"


def test_keras_config_path_follows_keras_home(tmp_path):
    assert backends.keras_config_path({"KERAS_HOME": str(tmp_path)}) == tmp_path / "keras.json"


# -- which backend: in a fresh process, frameworks hidden from the import system ----------

HIDE = textwrap.dedent("""\
    import importlib.machinery, importlib.util, sys

    HIDDEN = set(sys.argv[1].split(",")) - {""}   # absent: find_spec and import fail
    FAKED = set(sys.argv[2].split(",")) - {""}    # present to find_spec only

    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    _find_spec = importlib.util.find_spec

    def find_spec(name, package=None):
        if name.split(".")[0] in FAKED:
            return importlib.machinery.ModuleSpec(name, None)
        return _find_spec(name, package)

    importlib.util.find_spec = find_spec
    sys.argv[1:3] = []
    """)


def run_hidden(code: str, keras_home: Path, hidden=(), faked=(), env=None, timeout=120):
    """Run ``code`` in a fresh interpreter, KERAS_BACKEND unset, Keras's home in
    ``keras_home`` (no keras.json of the user's), the ``hidden`` modules absent and the
    ``faked`` ones findable."""
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environ.update(KERAS_HOME=str(keras_home), PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code),
                           ",".join(hidden), ",".join(faked)],
                          capture_output=True, text=True, env=environ, timeout=timeout,
                          cwd=ROOT)


def test_without_tensorflow_jax_is_chosen_before_keras_is_imported(tmp_path):
    proc = run_hidden("""
        import os, sys
        import fashion_core
        choice = fashion_core.BACKEND_CHOICE
        print(choice.name, os.environ["KERAS_BACKEND"], "keras" in sys.modules, sep="|")
        print(choice.describe())
        """, tmp_path, hidden=["tensorflow"], faked=["jax", "jaxlib"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "jax|jax|False"
    assert lines[1] == "jax (KERAS_BACKEND is unset and TensorFlow is not installed)"


def test_without_tensorflow_and_jax_torch_is_chosen(tmp_path):
    proc = run_hidden("""
        import fashion_core
        print(fashion_core.BACKEND_CHOICE.describe())
        """, tmp_path, hidden=["tensorflow", "jax", "jaxlib"], faked=["torch"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("torch (KERAS_BACKEND is unset and neither TensorFlow nor "
                                   "JAX is installed)")


def test_without_any_framework_data_still_imports_and_the_cli_names_the_extras(tmp_path):
    proc = run_hidden("""
        import os, sys
        import fashion_core.data
        fashion_core.data.synthetic(train_size=10, test_size=5)
        assert "KERAS_BACKEND" not in os.environ and "keras" not in sys.modules
        from fashion_core import cli
        sys.exit(cli.main(["train", "--epochs", "1"]))
        """, tmp_path, hidden=["tensorflow", "jax", "jaxlib", "torch"], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip()
    assert "\n" not in error, error
    assert error.startswith("error: no framework for Keras is installed")
    assert "pip install 'fashion-bench[tensorflow]' (or [jax], or [torch]" in error


def test_info_without_any_framework_says_so(tmp_path):
    proc = run_hidden("""
        import sys
        from fashion_core import cli
        sys.exit(cli.main(["info"]))
        """, tmp_path, hidden=["tensorflow", "jax", "jaxlib", "torch"], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith("backend: none usable: no framework for Keras is installed")
    assert "data: " in proc.stdout


@pytest.mark.skipif(not backends.installed("jax"), reason="JAX is not installed here")
def test_without_tensorflow_a_real_run_uses_jax(tmp_path, tiny_dir):
    """The whole path, where JAX is really installed: chosen, trained on, recorded."""
    out = tmp_path / "run.json"
    proc = run_hidden(f"""
        import sys
        from fashion_core import cli
        code = cli.main(["train", "--epochs", "1", "--batch-size", "64", "--no-verify",
                         "--json", {str(out)!r}])
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        sys.exit(code)
        """, tmp_path, hidden=["tensorflow"], env={"FASHION_MNIST_DIR": str(tiny_dir)},
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first == "backend: jax (KERAS_BACKEND is unset and TensorFlow is not installed)"
    assert json.loads(out.read_text())["backend"] == "jax"


def test_tf_config_is_read_in_one_place(monkeypatch):
    from fashion_core.config import ConfigError, tf_config

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert tf_config() is None
    with pytest.raises(ConfigError, match="multiworker needs TF_CONFIG"):
        tf_config(required=True)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}}')
    assert tf_config(required=True)["cluster"]["worker"] == ["localhost:1"]
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        tf_config()
