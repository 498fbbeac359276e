"""The tutorial's MnistRnn: an image read as 28 rows, the cell over them, Dense(10) on the last step.

    h_1..h_T = RNN(cell)(rows)            T = 28, 28 pixels per step
    logits   = Dense(10)(h_{len})         each example's last valid step, as dynamic_rnn returned
    loss     = sparse softmax cross-entropy
"""
import numpy as np

from rnn_core import cells, errors, fused
from rnn_core.compat import keras, tf
from rnn_core.data import COLS, NUM_CLASSES, ROWS


class MnistRnn(keras.layers.Layer):
    """``rnn`` is keras.layers.RNN over a cell, or a fused Keras layer with the same math."""

    def __init__(self, rnn, **kwargs):
        super().__init__(**kwargs)
        self.rnn = rnn
        self.logits = keras.layers.Dense(NUM_CLASSES, name="logits")

    def call(self, inputs, sequence_length=None, training=False):
        if tf.executing_eagerly():  # concrete values: check them before TensorFlow's own errors
            check_inputs(inputs, sequence_length)
        # A masked step carries the previous output forward, so the RNN's output is the last valid one.
        mask = None if sequence_length is None else tf.sequence_mask(sequence_length, tf.shape(inputs)[1])
        return self.logits(self.rnn(inputs, mask=mask, training=training))


IMPLEMENTATIONS = ("cell", "fused")


def build(config, unroll=False, implementation="cell"):
    """A built MnistRnn for a Config; its weights come from the current global seed.

    implementation "fused" runs Keras' own layer (fused.py) with the weights the cell would
    have had, so both implementations start from the same point.
    """
    errors.choice("implementation", implementation, IMPLEMENTATIONS)
    cell = cells.build(config.cell, config.num_units, **config.cell_args)
    model = MnistRnn(keras.layers.RNN(cell, unroll=unroll, name="rnn"), name="mnist_rnn")
    model(tf.zeros((1, ROWS, COLS)))
    if implementation == "fused":
        layer = fused.layer_for(config.cell, cell)
        twin = MnistRnn(layer, name="mnist_rnn")
        twin(tf.zeros((1, ROWS, COLS)))
        fused.copy_weights(config.cell, cell, layer)
        twin.logits.set_weights(model.logits.get_weights())
        model = twin
    return model


def loss_and_accuracy(logits, labels):
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=labels.dtype), labels), tf.float32)
    return loss, tf.reduce_mean(correct)


def check_inputs(inputs, sequence_length=None):
    """Raise a one-line UsageError unless inputs are finite (N, T, 28) and lengths lie in [1, T]."""
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[2] != COLS:
        raise errors.UsageError(f"inputs must have shape (batch, steps, {COLS}), got {x.shape}")
    if not np.isfinite(x).all():
        raise errors.UsageError(f"inputs must be finite, got {int((~np.isfinite(x)).sum())} NaN/Inf values")
    if sequence_length is not None:
        check_sequence_length(sequence_length, x.shape[0], x.shape[1])


def check_sequence_length(sequence_length, batch, steps=ROWS):
    """Raise a one-line UsageError unless every length lies in [1, steps]."""
    lengths = np.asarray(sequence_length)
    if lengths.shape != (batch,) or lengths.dtype.kind not in "iu":
        raise errors.UsageError(f"sequence_length must be {batch} integers in [1, {steps}], got shape {lengths.shape}"
                                f" dtype {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > steps:
        raise errors.UsageError(f"sequence_length must lie in [1, {steps}], got values in "
                                f"[{lengths.min()}, {lengths.max()}]")
    return lengths
