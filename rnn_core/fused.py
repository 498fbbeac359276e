"""Keras' own layers with the same math as three TF1 cells, holding the cell's weights.

SimpleRNN, LSTM and GRU(reset_after=False) compute exactly BasicRNNCell, BasicLSTMCell and
GRUCell once TF1's concatenated kernel is split into kernel and recurrent kernel, the gates are
reordered (TF1 LSTM i,j,f,o -> Keras i,f,c,o; TF1 GRU r,u -> Keras z=u,r,h) and BasicLSTMCell's
constant forget_bias is folded into the forget-gate bias. On a GPU the LSTM runs cuDNN's kernel;
SimpleRNN has none, and GRU's needs reset_after=True, which is different math, so those two stay
Keras' generic loop.
"""
import numpy as np

from rnn_core.compat import keras

FUSABLE = ("basic_rnn", "basic_lstm", "gru")


def layer_for(cell_name, cell):
    """An unbuilt Keras layer with the cell's math; call copy_weights(cell, layer) once both are built."""
    args = {"units": cell.num_units, "name": "rnn"}
    if cell_name == "basic_rnn":
        return keras.layers.SimpleRNN(**args, activation="tanh")
    if cell_name == "basic_lstm":
        return keras.layers.LSTM(**args, unit_forget_bias=False)
    if cell_name == "gru":
        return keras.layers.GRU(**args, reset_after=False)
    raise ValueError(f"cell must be one of {', '.join(FUSABLE)} for a fused layer, got {cell_name!r}")


def to_fused(cell_name, num_units, arrays, forget_bias=0.0):
    """Arrays in the cell's layout (its trainable_weights order) -> the fused layer's weight list.

    The map is linear but for BasicLSTMCell's forget_bias, which weights get and gradients do not
    (pass forget_bias=0 for gradients), so one function serves weights and their gradients.
    """
    n = num_units
    if cell_name == "basic_rnn":
        kernel, bias = arrays
    elif cell_name == "basic_lstm":
        order = lambda a: np.concatenate([np.split(a, 4, axis=-1)[k] for k in (0, 2, 1, 3)], axis=-1)  # i,f,j,o
        kernel, bias = order(arrays[0]), order(arrays[1]).copy()
        bias[n:2 * n] += forget_bias
    else:
        gate_kernel, gate_bias, candidate_kernel, candidate_bias = arrays
        r, u = np.split(gate_kernel, 2, axis=-1)
        b_r, b_u = np.split(gate_bias, 2)
        kernel = np.concatenate([u, r, candidate_kernel], axis=-1)
        bias = np.concatenate([b_u, b_r, candidate_bias])
    return [kernel[:-n], kernel[-n:], bias]


def copy_weights(cell_name, cell, layer):
    """Load the TF1 cell's weights into the equivalent Keras layer."""
    arrays = [w.numpy() for w in cell.trainable_weights]
    layer.set_weights(to_fused(cell_name, cell.num_units, arrays, getattr(cell, "forget_bias", 0.0)))
