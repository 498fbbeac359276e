"""One math, several implementations: the generic cell loop, the same loop under XLA, and Keras'
fused layers give the same logits, loss and gradients for the same weights, masks included.

The reference is the eager cell loop on the CPU (tests/reference.py), on real digits with
per-example lengths from 28 down to 1, so a mask that is dropped or misapplied shows.
"""
import pytest

from rnn_core import fused

import reference


@pytest.mark.quick
@pytest.mark.parametrize("name", [name for name, _ in reference.cases(["fused"])])
def test_fused_layer_matches_the_cell(name):
    """Keras' SimpleRNN/LSTM/GRU hold the TF1 cell's weights re-laid out (fused.to_fused) and compute
    the same function; lstm_fb5 checks that forget_bias 5 is folded into the forget-gate bias."""
    x, y, lengths = reference.batch(16)
    reference.assert_matches(name, "fused", reference.trainer(name, "fused"), x, y, lengths)


@pytest.mark.parametrize("name", [name for name, _ in reference.cases(["cell_xla"])])
def test_xla_matches_the_eager_cell_loop(name):
    """XLA fuses and reorders the loop's arithmetic; the results stay equal to float32 precision.
    For ln_lstm that includes the non-finite gradients, in the same places."""
    x, y, lengths = reference.batch(16)
    reference.assert_matches(name, "cell_xla", reference.trainer(name, "cell_xla"), x, y, lengths)


@pytest.mark.quick
def test_the_check_catches_a_lost_forget_bias():
    """The tolerance is tight enough to see a mistake: lstm_fb5's fused layer without its forget_bias 5."""
    trainer = reference.trainer("lstm_fb5", "fused")
    cell = reference.trainer("lstm_fb5", "cell").model.rnn.cell
    trainer.model.rnn.set_weights(fused.to_fused("basic_lstm", cell.num_units, [w.numpy() for w in cell.weights]))
    x, y, lengths = reference.batch(16)
    with pytest.raises(AssertionError, match="differs by"):
        reference.assert_matches("lstm_fb5", "fused", trainer, x, y, lengths)
