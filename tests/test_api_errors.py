"""Bad input through the Python API: one-line UsageErrors naming the parameter, before TensorFlow runs."""
import numpy as np
import pytest

from rnn_core import configs, data, errors

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("changes, message", [
    ({"num_units": 0}, "num_units must be a positive integer, got 0"),
    ({"batch_size": -128}, "batch_size must be a positive integer, got -128"),
    ({"epochs": 2.5}, "epochs must be a positive integer, got 2.5"),
    ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"clip_norm": -5.0}, "clip_norm must be a finite number > 0, got -5.0"),
], ids=["num_units", "batch_size", "epochs", "lr", "lr-nan", "clip_norm"])
def test_bad_config(changes, message):
    with pytest.raises(errors.UsageError, match=f"^{message}$"):
        configs.get("lstm").replace(**changes)


def test_unknown_config():
    with pytest.raises(errors.UsageError, match="^config must be one of vanilla, lstm, gru, lstm_fb5, ln_lstm, "
                                                "ln_lstm_fixed, got 'lstm2'$"):
        configs.get("lstm2")


@pytest.fixture(scope="module")
def model():
    from rnn_core import model
    return model.build(configs.get("vanilla"))


@pytest.mark.parametrize("inputs, lengths, message", [
    (np.zeros((2, 28)), None, r"inputs must have shape \(batch, steps, 28\), got \(2, 28\)"),
    (np.full((2, 28, 28), np.nan), None, "inputs must be finite, got 1568 NaN/Inf values"),
    (np.zeros((2, 28, 28)), [28, 0], r"sequence_length must lie in \[1, 28\], got values in \[0, 28\]"),
    (np.zeros((2, 28, 28)), [29, 3], r"sequence_length must lie in \[1, 28\], got values in \[3, 29\]"),
    (np.zeros((2, 28, 28)), [28], r"sequence_length must be 2 integers in \[1, 28\]"),
    (np.zeros((2, 28, 28)), [2.5, 3.0], r"sequence_length must be 2 integers in \[1, 28\]"),
], ids=["rank", "nan", "length-0", "length-29", "length-count", "length-float"])
def test_bad_model_input(model, inputs, lengths, message):
    with pytest.raises(errors.UsageError, match=message):
        model(inputs.astype(np.float32), sequence_length=lengths)


def test_sequence_length_selects_the_last_valid_step(model):
    """A length of 5 gives the same logits as the first 5 rows alone: dynamic_rnn's last valid step."""
    x = np.random.RandomState(0).rand(3, 28, 28).astype(np.float32)
    masked = model(x, sequence_length=[5, 28, 17]).numpy()
    np.testing.assert_allclose(masked[0], model(x[:1, :5]).numpy()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked[1], model(x[1:2]).numpy()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked[2], model(x[2:3, :17]).numpy()[0], rtol=1e-5, atol=1e-6)


def test_bad_dataset_arrays():
    x, y = np.zeros((4, 28, 28), np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(errors.UsageError, match=r"^custom train labels must be integers 0\.\.9, got dtype float64$"):
        data.Dataset("custom", x, y.astype(float), x, y)
    with pytest.raises(errors.UsageError, match=r"^custom test images must be finite, got 1 NaN/Inf values$"):
        bad = x.copy()
        bad[0, 0, 0] = np.nan
        data.Dataset("custom", x, y, bad, y)


def test_batch_larger_than_dataset():
    from rnn_core import train
    x, y = np.zeros((4, 28, 28), np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(errors.UsageError, match=r"^batch_size must be at most the 4 training images, got 128$"):
        train.fit(configs.get("vanilla"), data.Dataset("tiny", x, y, x, y), log=None)
