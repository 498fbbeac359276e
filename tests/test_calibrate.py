"""rnn-core calibrate keeps each finished run, so an interrupted calibration resumes where it stopped."""
import json

from rnn_core import calibrate, configs

# ln_lstm stops at its first step: the cheapest run, and one whose history holds NaN to read back.
CONFIG = configs.get("ln_lstm").replace(epochs=1)


def test_interrupted_calibration_resumes(tmp_path, seed):
    """A rerun over --rnn-seed and the next, after a calibration that stopped once the first was done,
    reads the first back (NaN included, bit for bit) and trains only the second."""
    (first,), stored = calibrate._fit_seeds(CONFIG, "mnist-5k", None, [seed], tmp_path)
    assert stored == 0 and first.nonfinite is not None
    runs, stored = calibrate._fit_seeds(CONFIG, "mnist-5k", None, [seed, seed + 1], tmp_path)
    assert stored == 1 and len(list(tmp_path.glob("*.json"))) == 2
    assert json.dumps(runs[0].history()) == json.dumps(first.history())


def test_stored_runs_are_kept_apart_by_configuration(tmp_path, seed):
    """A run stored for one configuration is never read back for another."""
    calibrate._fit_seeds(CONFIG, "mnist-5k", None, [seed], tmp_path)
    _, stored = calibrate._fit_seeds(CONFIG.replace(lr=1e-4), "mnist-5k", None, [seed], tmp_path)
    assert stored == 0 and len(list(tmp_path.glob("*.json"))) == 2
