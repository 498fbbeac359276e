"""rnn-core end to end: compare writes its four outputs; diagnose names the origin; bad input is one line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rnn_core import cli

ROOT = Path(__file__).resolve().parents[1]


def rnn_core(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnn_core", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.quick
@pytest.mark.parametrize("args, message", [
    (["compare", "--configs", "lstm,nope"], "config must be one of vanilla, lstm, gru, lstm_fb5, ln_lstm, "
                                            "ln_lstm_fixed, got 'nope'"),
    (["compare", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["compare", "--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["compare", "--seed", "-1"], "seed must be an integer >= 0, got -1"),
    (["compare", "--log-every", "x"], "log-every must be a positive integer, got 'x'"),
    (["compare", "--data-dir", "/no/such/dir", "--dataset", "mnist"], "data_dir must be an existing directory"),
    (["diagnose", "--seeds", "3-x"], "seeds must be a range like 0-4"),
    (["diagnose", "--config", "gru_fast"], "argument --config: invalid choice: 'gru_fast'"),
    (["calibrate", "--tiers", "quick,nightly"], "tier must be one of quick, default, slow, got 'nightly'"),
    (["calibrate", "--seed", "3"], "unrecognized arguments: --seed 3"),
    (["diagnose", "--config", "lstm"], "config (the fix table's remedies change a layer norm; else --no-fixes) "
                                       "must be one of ln_lstm, ln_lstm_fixed, got 'lstm'"),
    (["table", str(ROOT / "README.md")], "README.md: not JSON"),
    (["table", str(ROOT / "rnn_core" / "calibration" / "calibration.json")],
     "calibration.json: neither a rnn_core.results/1 file nor a pytest-benchmark JSON file"),
], ids=["config", "dataset", "epochs", "seed", "log-every", "data-dir", "seeds", "diagnose-config", "tier",
        "calibrate-seed-is-not-seeds", "diagnose-fixes-config", "table-not-json", "table-other-schema"])
def test_usage_error_is_one_line(args, message, capsys):
    """Exit 2, one line on stderr naming the parameter and what it accepts, no traceback; before TensorFlow."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.quick
@pytest.mark.parametrize("args", [["compare", "--epochs", "0"], ["calibrate", "--tiers", "nightly"],
                                  ["diagnose", "--config", "lstm"], ["table", "/no/such.json"]],
                         ids=lambda args: args[0])
def test_usage_errors_do_not_import_tensorflow(args):
    """Bad arguments are rejected before the 5 s TensorFlow import."""
    code = ("import sys; from rnn_core import cli\n"
            f"try: cli.main({args!r})\n"
            "except SystemExit as e: assert e.code == 2, e.code\n"
            "assert 'tensorflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """rnn-core compare --epochs 1 on mnist-5k, run once for the tests below: (out dir, finished process)."""
    out = tmp_path_factory.mktemp("compare") / "out"
    return out, rnn_core("compare", "--epochs", "1", "--out", str(out))


def test_compare_writes_four_outputs(compared):
    """One epoch of the six configurations: results.json/md, curves.png, TensorBoard events; ln_lstm is the only
    non-finite run."""
    out, result = compared
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == "rnn_core.results/1"
    assert doc["dataset"] == {"name": "mnist-5k", "train": 4000, "test": 1000}
    assert set(doc["environment"]) >= {"tensorflow", "keras", "numpy", "python", "device", "processor", "threads"}
    nonfinite = {run["config"]: run["nonfinite"] for run in doc["runs"]}
    assert list(nonfinite) == ["vanilla", "lstm", "gru", "lstm_fb5", "ln_lstm", "ln_lstm_fixed"]
    assert [name for name, bad in nonfinite.items() if bad] == ["ln_lstm"]
    assert "| ln_lstm | 1 | 1 |" in (out / "results.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[tst] ep 1, step 31, accu" in result.stdout
    tags = tensorboard_tags(out / "tensorboard")
    assert tags["train_lstm"] == {"train accuracy", "loss"}
    assert tags["test_lstm"] == {"test accuracy", "test mean accuracy"}


def test_table_merges_results_and_benchmarks(compared, tmp_path):
    """rnn-core table: a row per configuration, a column per environment, accuracy from results.json and
    ms/iter and its ratio to the matmul floor from a real pytest-benchmark file of the same environment."""
    out, _ = compared
    bench = tmp_path / "benchmark.json"
    timed = subprocess.run([sys.executable, "-m", "pytest", "-m", "benchmark and not gpu", "-p", "no:cacheprovider",
                            "-k", "train and (vanilla and cell_xla or basic_rnn)", "--benchmark-max-time=0.05",
                            f"--benchmark-json={bench}", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert timed.returncode == 0, timed.stdout[-2000:]
    result = rnn_core("table", str(bench), str(out / "results.json"), "--out", str(tmp_path))  # either order
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((tmp_path / "crossversion.json").read_text())
    environment = json.loads((out / "results.json").read_text())["environment"]
    assert table["columns"] == [f"TF {environment['tensorflow']} / Keras {environment['keras']}"]
    median = {b["params"].get("name", b["params"].get("cell")): b["stats"]["median"]
              for b in json.loads(bench.read_text())["benchmarks"]}
    vanilla = table["rows"]["vanilla"][table["columns"][0]]
    assert vanilla["ms_per_iter"] == pytest.approx(median["vanilla"] * 1e3)
    assert vanilla["times_floor"] == pytest.approx(median["vanilla"] / median["basic_rnn"])
    assert (f"| vanilla | {vanilla['test_accuracy']:.3f} @ 31 steps, {median['vanilla'] * 1e3:.2f} ms "
            f"({vanilla['times_floor']:.2f}x floor) |") in result.stdout
    assert "| ln_lstm | NaN @ 1 steps" in result.stdout


def test_diagnose_names_the_origin(tmp_path):
    """diagnose prints the origin (layer norm, step) and writes diagnosis.json/md with --out."""
    result = rnn_core("diagnose", "--no-fixes", "--epochs", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads((tmp_path / "diagnosis.json").read_text())
    assert doc["schema"] == "rnn_core.diagnosis/1"
    origin = doc["origin"]
    assert origin["step"] == 0 and origin["pass"] == "backward" and origin["epsilon"] == 1e-12
    assert f"the '{origin['layer_norm']}' layer norm at row {origin['time_step']}" in result.stdout
    assert (tmp_path / "diagnosis.md").read_text() in result.stdout


def tensorboard_tags(logdir):
    """{run directory: scalar tags} read back from the real event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = {}
    for run in sorted(p for p in logdir.iterdir() if p.is_dir()):
        accumulator = EventAccumulator(str(run))
        accumulator.Reload()
        tags[run.name] = set(accumulator.Tags()["scalars"]) | set(accumulator.Tags()["tensors"])
    return tags
