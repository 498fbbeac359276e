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


def copy_weights(cell_name, cell, layer):
    """Load the TF1 cell's weights into the equivalent Keras layer."""
    n = cell.num_units
    if cell_name == "basic_rnn":
        kernel, bias = cell.kernel.numpy(), cell.bias.numpy()
        layer.set_weights([kernel[:-n], kernel[-n:], bias])
    elif cell_name == "basic_lstm":
        order = lambda a: np.concatenate([np.split(a, 4, axis=-1)[k] for k in (0, 2, 1, 3)], axis=-1)  # i,f,j,o
        kernel, bias = order(cell.kernel.numpy()), order(cell.bias.numpy())
        bias[n:2 * n] += cell.forget_bias
        layer.set_weights([kernel[:-n], kernel[-n:], bias])
    else:
        r, u = np.split(cell.gate_kernel.numpy(), 2, axis=-1)
        kernel = np.concatenate([u, r, cell.candidate_kernel.numpy()], axis=-1)
        b_r, b_u = np.split(cell.gate_bias.numpy(), 2)
        layer.set_weights([kernel[:-n], kernel[-n:], np.concatenate([b_u, b_r, cell.candidate_bias.numpy()])])
