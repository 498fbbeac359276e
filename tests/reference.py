"""The eager cell loop on the CPU as the numerical reference for every other implementation.

Equivalence tests assert against it, and each benchmark checks its implementation against it
before timing anything, as PyTorch's fastrnns does.
"""
import numpy as np

from rnn_core import configs, data, fused, train
from rnn_core import model as model_lib
from rnn_core.compat import tf

# (jit_compile, model implementation) of each way the suite runs a configuration.
IMPLEMENTATIONS = {"cell": (False, "cell"), "cell_xla": (True, "cell"), "fused": (False, "fused")}
# Normwise: max |difference| <= TOLERANCE x max |reference|, per tensor. Measured (python
# tests/reference.py: 5 batches, with and without lengths, in every tox environment, on an AMD EPYC):
# at most 8.9e-7 for the fused layers and XLA, 2.2e-6 for the layer-norm cells on lifted digits (see
# LIFT), so 1e-5 still catches a wrong gate order, a lost forget_bias or a dropped mask, which move
# results by 1e-2 or more.
TOLERANCE = 1e-5
# On blank rows TF1's layer norm is ill-conditioned: a state equal across units (as norm_shift makes
# it after a blank row) is normalized to its float32 rounding noise times gamma / sqrt(1e-12), so two
# correct evaluations that sum the mean in another order differ by up to 0.17 (ln_lstm_fixed under
# XLA, TF 2.15). Layer-norm cells are therefore compared at TOLERANCE on the digits lifted off zero
# (LIFT added to every pixel: no row is blank, no norm sees variance 0), and on the real digits only
# in where their values are non-finite (ln_lstm's NaN). A lifted blank row is still the same in every
# pixel, so how far its projection spreads across units, and with it how well the norms are
# conditioned, grows with LIFT: at 0.05 (chosen on an Intel Xeon, where it gave 3.2e-6) ln_lstm's XLA
# gradients differed by up to 2.3e-5 on the AMD EPYC with tf-keras; at 0.25, by at most 2.2e-6.
LIFT = 0.25


def cases(implementations=tuple(IMPLEMENTATIONS)):
    """(config name, implementation) pairs that exist: fused only where Keras has the cell's math."""
    return [(name, impl) for name, config in configs.CONFIGS.items() for impl in implementations
            if impl != "fused" or config.cell in fused.FUSABLE]


def batch(size=128, seed=0):
    """size real mnist-5k test digits, as constant tensors, and per-example lengths covering [1, 28]."""
    images = data.load("mnist-5k")
    pick = np.random.RandomState(seed).choice(len(images.test_y), size, replace=False)
    lengths = np.resize(np.arange(data.ROWS, 0, -1, dtype=np.int32), size)
    return tf.constant(images.test_x[pick]), tf.constant(images.test_y[pick]), tf.constant(lengths)


def trainer(name, implementation, seed=0):
    """A Trainer of the configuration in that implementation; the same seed gives the same weights in all."""
    jit_compile, model = IMPLEMENTATIONS[implementation]
    return train.Trainer(configs.get(name), seed, jit_compile=jit_compile, implementation=model)


def outputs(trainer_, x, y, lengths=None, jit_compile=None):
    """(logits, loss, gradients) of trainer_'s model: eager when jit_compile is None, else a tf.function."""

    def forward_backward(x, y, lengths):
        with tf.GradientTape() as tape:
            logits = trainer_.model(x, sequence_length=lengths, training=True)
            loss, _ = model_lib.loss_and_accuracy(logits, y)
        return logits, loss, tape.gradient(loss, trainer_.variables)

    run = forward_backward if jit_compile is None else tf.function(forward_backward, jit_compile=jit_compile)
    logits, loss, grads = run(x, y, lengths)
    return logits.numpy(), loss.numpy(), [g.numpy() for g in grads]


def expected(name, implementation, x, y, lengths=None, seed=0):
    """The reference's logits, loss and gradients, laid out as the implementation holds its weights."""
    with tf.device("/CPU:0"):
        logits, loss, grads = outputs(trainer(name, "cell", seed), x, y, lengths)
    if IMPLEMENTATIONS[implementation][1] == "fused":
        config = configs.get(name)
        grads = fused.to_fused(config.cell, config.num_units, grads[:-2]) + grads[-2:]
    return logits, loss, grads


def assert_matches(name, implementation, trainer_, x, y, lengths=None):
    """The implementation's logits, loss and every gradient equal the eager cell loop's (layer-norm
    cells: non-finite in the same places on x, equal on x + LIFT; see LIFT)."""
    layer_norm = configs.get(name).cell == "layer_norm_lstm"
    for inputs, tolerance in ([(x, None), (x + LIFT, TOLERANCE)] if layer_norm else [(x, TOLERANCE)]):
        for label, error in errors(name, implementation, trainer_, inputs, y, lengths):
            assert tolerance is None or error <= tolerance, \
                f"{name} {implementation}: {label} differs by {error:.3g} > {tolerance:g} normwise"


def errors(name, implementation, trainer_, x, y, lengths=None):
    """(label, normwise error) of the logits, the loss and each gradient against the eager cell loop."""
    want = expected(name, implementation, x, y, lengths)
    got = outputs(trainer_, x, y, lengths, jit_compile=IMPLEMENTATIONS[implementation][0])
    labels = ["logits", "loss", *(f"gradient of {v}" for v in trainer_.variable_names)]
    return [(label, normwise_error(a, b, f"{name} {implementation}: {label}"))
            for label, a, b in zip(labels, [*got[:2], *got[2]], [*want[:2], *want[2]])]


def normwise_error(actual, desired, what):
    """max |actual - desired| / max |desired| over the finite entries, which must be the same in both."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    finite = np.isfinite(desired)
    assert (np.isfinite(actual) == finite).all(), f"{what}: non-finite values in different places"
    if not finite.any():
        return 0.0
    scale = np.abs(desired[finite]).max()
    return float(np.abs(actual[finite] - desired[finite]).max() / scale) if scale else 0.0


if __name__ == "__main__":  # the measurement behind TOLERANCE and LIFT
    for implementation in ("fused", "cell_xla"):
        for name, _ in cases([implementation]):
            trainer_ = trainer(name, implementation)
            for lift in (0.0, LIFT):
                # With per-example lengths, as test_equivalence checks, and without, as the benchmarks do.
                worst = max(error for seed in range(5) for x, y, lengths in [batch(16, seed)] for lens in (lengths, None)
                            for _, error in errors(name, implementation, trainer_, x + lift, y, lens))
                print(f"{implementation:9s} {name:14s} lift {lift:g}: worst normwise error over 5 batches, with and "
                      f"without lengths {worst:.2e}")
