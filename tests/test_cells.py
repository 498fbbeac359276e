"""The five cells against NumPy references written from TF1's math, and the TF1 semantics that differ
from Keras' own cells: forget_bias as a forward-pass constant, GRU's gate bias of 1.0, layer norm
without biases and with TF1's epsilon of 1e-12.
"""
import numpy as np
import pytest

from rnn_core import cells
from rnn_core.compat import keras, tf, variable_name
from rnn_core.errors import UsageError

pytestmark = pytest.mark.quick

BATCH, STEPS, INPUT_DIM, UNITS = 3, 5, 4, 6


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


ACTIVATIONS = {None: np.tanh, "relu": lambda z: np.maximum(z, 0)}  # None is TF1's tanh


def layer_norm(z, w, name, epsilon):
    """TF1's layer norm over the units: gamma * (z - mean) / sqrt(var + epsilon) + beta."""
    mean, var = z.mean(axis=1, keepdims=True), z.var(axis=1, keepdims=True)
    return w[name + "_gamma"] * (z - mean) / np.sqrt(var + epsilon) + w[name + "_beta"]


# One step of each cell: (weights by name, x_t, states, activation, the cell's arguments) -> (output, states).
# Defaults come from TF1's signatures, not from the cell, so a dropped argument shows as a mismatch.

def basic_rnn_step(w, x, states, act, args):
    h = act(np.concatenate([x, states[0]], 1) @ w["kernel"] + w["bias"])
    return h, [h]


def basic_lstm_step(w, x, states, act, args):
    c, h = states
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ w["kernel"] + w["bias"], 4, axis=1)
    c = c * sigmoid(f + args.get("forget_bias", 1.0)) + sigmoid(i) * act(j)
    h = act(c) * sigmoid(o)
    return h, [c, h]


def lstm_step(w, x, states, act, args):
    c_prev, m_prev = states
    i, j, f, o = np.split(np.concatenate([x, m_prev], 1) @ w["kernel"] + w["bias"], 4, axis=1)
    peepholes = args.get("use_peepholes", False)
    if peepholes:
        f, i = f + w["w_f_diag"] * c_prev, i + w["w_i_diag"] * c_prev
    c = sigmoid(f + args.get("forget_bias", 1.0)) * c_prev + sigmoid(i) * act(j)
    if args.get("cell_clip") is not None:
        c = np.clip(c, -args["cell_clip"], args["cell_clip"])
    if peepholes:
        o = o + w["w_o_diag"] * c  # the new c: TF1 peeps at c_t for the output gate
    m = sigmoid(o) * act(c)
    if args.get("num_proj") is not None:
        m = m @ w["projection_kernel"]
        if args.get("proj_clip") is not None:
            m = np.clip(m, -args["proj_clip"], args["proj_clip"])
    return m, [c, m]


def gru_step(w, x, states, act, args):
    h = states[0]
    r, u = np.split(sigmoid(np.concatenate([x, h], 1) @ w["gates_kernel"] + w["gates_bias"]), 2, axis=1)
    # TF1 resets h before the candidate's matmul (Keras' reset_after=True resets after it).
    c = act(np.concatenate([x, r * h], 1) @ w["candidate_kernel"] + w["candidate_bias"])
    h = u * h + (1 - u) * c
    return h, [h]


def layer_norm_lstm_step(w, x, states, act, args):
    c, h = states
    normed, epsilon = args.get("layer_norm", True), args.get("epsilon", 1e-12)
    z = np.concatenate([x, h], 1) @ w["kernel"]
    if args.get("use_bias", not normed):  # TF1 added its bias only without layer norm; use_bias is rnn_core's
        z = z + w["bias"]
    i, j, f, o = np.split(z, 4, axis=1)
    if normed:
        i, j, f, o = (layer_norm(v, w, name, epsilon) for v, name in zip((i, j, f, o), cells.LAYER_NORMS))
    c = c * sigmoid(f + args.get("forget_bias", 1.0)) + sigmoid(i) * act(j)
    if normed:
        c = layer_norm(c, w, "state", epsilon)
    h = act(c) * sigmoid(o)
    return h, [c, h]


REFERENCE_STEPS = {"basic_rnn": basic_rnn_step, "basic_lstm": basic_lstm_step, "lstm": lstm_step,
                   "gru": gru_step, "layer_norm_lstm": layer_norm_lstm_step}


def reference(name, args, cell, x):
    """The NumPy reference over every step of x, in float64, with the cell's current weights."""
    w = {variable_name(v).rsplit("/", 1)[-1]: v.numpy().astype(np.float64) for v in cell.weights}
    states = [np.zeros((len(x), size)) for size in cell.state_size]
    outputs = []
    for t in range(x.shape[1]):
        output, states = REFERENCE_STEPS[name](w, x[:, t].astype(np.float64), states,
                                               ACTIVATIONS[args.get("activation")], args)
        outputs.append(output)
    return np.stack(outputs, axis=1)


def built(name, **args):
    """(RNN over the cell, the cell), built at its initial weights."""
    cell = cells.build(name, UNITS, **args)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build((None, STEPS, INPUT_DIM))
    return rnn, cell


def perturb(cell):
    """Move every weight off its initial value, so a zero bias or a unit gamma can't hide a missing term."""
    rng = np.random.default_rng(0)
    cell.set_weights([w + rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in cell.get_weights()])


def sequence():
    return np.random.default_rng(1).uniform(0, 1, (BATCH, STEPS, INPUT_DIM)).astype(np.float32)


def variable(cell, name):
    return next(v for v in cell.weights if variable_name(v).rsplit("/", 1)[-1] == name)


REFERENCE_CASES = [
    pytest.param("basic_rnn", {}, id="basic_rnn"),
    pytest.param("basic_rnn", {"activation": "relu"}, id="basic_rnn-relu"),
    pytest.param("basic_lstm", {}, id="basic_lstm"),
    pytest.param("basic_lstm", {"forget_bias": 5.0}, id="basic_lstm-forget_bias_5"),
    pytest.param("lstm", {}, id="lstm"),
    pytest.param("lstm", {"use_peepholes": True}, id="lstm-peepholes"),
    # Clips well inside the values the random weights produce, so clipping is exercised.
    pytest.param("lstm", {"cell_clip": 0.3}, id="lstm-cell_clip"),
    pytest.param("lstm", {"num_proj": 3, "proj_clip": 0.2}, id="lstm-num_proj-proj_clip"),
    pytest.param("lstm", {"use_peepholes": True, "cell_clip": 0.3, "num_proj": 3, "proj_clip": 0.2},
                 id="lstm-peepholes-cell_clip-num_proj-proj_clip"),
    pytest.param("gru", {}, id="gru"),
    pytest.param("layer_norm_lstm", {}, id="layer_norm_lstm"),
    pytest.param("layer_norm_lstm", {"norm_gain": 0.85, "norm_shift": 0.15}, id="layer_norm_lstm-gain_shift"),
    pytest.param("layer_norm_lstm", {"epsilon": 0.5}, id="layer_norm_lstm-epsilon_0.5"),
    pytest.param("layer_norm_lstm", {"layer_norm": False}, id="layer_norm_lstm-no_layer_norm"),
    pytest.param("layer_norm_lstm", {"use_bias": True}, id="layer_norm_lstm-use_bias"),
]


@pytest.mark.parametrize("name, args", REFERENCE_CASES)
def test_matches_numpy_reference(name, args):
    rnn, cell = built(name, **args)
    perturb(cell)
    x = sequence()
    np.testing.assert_allclose(rnn(x).numpy(), reference(name, args, cell, x), rtol=1e-5, atol=1e-6)


def test_basic_lstm_forget_bias_is_a_forward_constant_not_the_bias_initial_value():
    rnn_5, cell_5 = built("basic_lstm", forget_bias=5.0)
    np.testing.assert_array_equal(variable(cell_5, "bias").numpy(), 0)
    perturb(cell_5)
    rnn_1, cell_1 = built("basic_lstm", forget_bias=1.0)
    cell_1.set_weights(cell_5.get_weights())
    x = sequence()
    assert not np.allclose(rnn_1(x), rnn_5(x), atol=1e-3)
    # The constant adds to the f slice of the pre-activations, wherever the learned bias has moved.
    bias = variable(cell_5, "bias").numpy()
    bias[2 * UNITS:3 * UNITS] += 4.0
    variable(cell_1, "bias").assign(bias)
    np.testing.assert_allclose(rnn_1(x), rnn_5(x), rtol=1e-5, atol=1e-6)


def test_gru_gate_bias_starts_at_one_and_candidate_bias_at_zero():
    _, cell = built("gru")
    np.testing.assert_array_equal(variable(cell, "gates_bias").numpy(), np.ones(2 * UNITS))
    np.testing.assert_array_equal(variable(cell, "candidate_bias").numpy(), np.zeros(UNITS))


@pytest.mark.parametrize("name, args, zeros", [
    ("gru", {"kernel_initializer": "zeros"}, {"gates_kernel", "candidate_kernel"}),
    ("gru", {"bias_initializer": "zeros"}, {"gates_bias", "candidate_bias"}),
    ("lstm", {"initializer": "zeros", "num_proj": 5, "use_peepholes": True},
     {"kernel", "projection_kernel", "w_f_diag", "w_i_diag", "w_o_diag"}),
], ids=["gru-kernel_initializer", "gru-bias_initializer", "lstm-initializer"])
def test_tf1_initializer_arguments_replace_the_defaults(name, args, zeros):
    """TF1's GRUCell(kernel_initializer, bias_initializer) and LSTMCell(initializer: kernel, projection and
    peepholes): the named weights start from the given initializer (here zeros), the others keep their
    defaults."""
    _, cell = built(name, **args)
    _, default = built(name, **{k: v for k, v in args.items() if not k.endswith("initializer")})
    for weight in cell.weights:
        short = variable_name(weight).rsplit("/", 1)[-1]
        assert weight.numpy().any() == (short not in zeros and variable(default, short).numpy().any()), short


NORM_WEIGHTS = {f"{norm}_{part}" for norm in cells.LAYER_NORMS for part in ("gamma", "beta")}


@pytest.mark.parametrize("args, expected", [
    ({}, {"kernel"} | NORM_WEIGHTS),
    ({"layer_norm": False}, {"kernel", "bias"}),
    ({"use_bias": True}, {"kernel", "bias"} | NORM_WEIGHTS),
], ids=["layer_norm", "no_layer_norm", "layer_norm-use_bias"])
def test_layer_norm_lstm_has_a_bias_without_layer_norm_or_with_use_bias(args, expected):
    _, cell = built("layer_norm_lstm", **args)
    assert {variable_name(v).rsplit("/", 1)[-1] for v in cell.weights} == expected


@pytest.mark.parametrize("args, glorot", [
    ({"layer_norm": False}, True),
    ({"use_bias": True}, True),
    ({"layer_norm": False, "bias_initializer": "zeros"}, False),
], ids=["no_layer_norm", "use_bias", "no_layer_norm-zeros"])
def test_layer_norm_lstm_bias_starts_glorot_uniform_as_tf1s_get_variable_gave_it_or_at_zero(args, glorot):
    _, cell = built("layer_norm_lstm", **args)
    bias = variable(cell, "bias").numpy()
    if not glorot:
        np.testing.assert_array_equal(bias, 0)
        return
    limit = np.sqrt(6 / (4 * UNITS + 4 * UNITS))  # a 1-D shape is its own fan in and fan out, in TF1 and Keras
    assert np.all(bias != 0) and np.abs(bias).max() <= limit
    assert np.abs(bias).max() > limit / 2  # spread over the range, not a small constant: P(fail) = 2**-24


def test_layer_norm_lstm_gammas_start_at_norm_gain_and_betas_at_norm_shift():
    _, cell = built("layer_norm_lstm", norm_gain=0.85, norm_shift=0.15)
    for norm in cells.LAYER_NORMS:
        np.testing.assert_array_equal(variable(cell, norm + "_gamma").numpy(), np.float32(0.85))
        np.testing.assert_array_equal(variable(cell, norm + "_beta").numpy(), np.float32(0.15))


def test_layer_norm_lstm_epsilon_defaults_to_tf1s():
    _, cell = built("layer_norm_lstm")
    assert cell.epsilon == 1e-12 and cell.get_config()["epsilon"] == 1e-12


def test_layer_norm_lstm_on_blank_rows_is_finite_and_its_first_output_is_the_betas_alone():
    """The forward pass survives a blank first row: with x = 0 and h_0 = c_0 = 0 every gate's
    pre-activation row is exactly zero, so each norm returns its beta whatever the kernel and gammas.

    transform_beta = 0 makes g = tanh(0) = 0, so c is exactly zero too and LN_state returns state_beta:
    h_1 = tanh(state_beta) * sigmoid(output_beta). With any other transform_beta, c is a constant but
    nonzero row whose float32 mean is off by an ulp, and LN_state multiplies that rounding error by
    gamma / sqrt(1e-12) = 1e6 (several 1e-3 in h_1): the forward face of the gradient blow-up below.
    """
    rnn, cell = built("layer_norm_lstm")
    perturb(cell)
    variable(cell, "transform_beta").assign(np.zeros(UNITS, np.float32))
    outputs = rnn(np.zeros((BATCH, STEPS, INPUT_DIM), np.float32)).numpy()
    assert np.isfinite(outputs).all()
    betas_alone = np.tanh(variable(cell, "state_beta").numpy()) * sigmoid(variable(cell, "output_beta").numpy())
    np.testing.assert_allclose(outputs[:, 0], np.broadcast_to(betas_alone, (BATCH, UNITS)), rtol=1e-6)


@pytest.mark.parametrize("epsilon, gain", [(1e-12, 0.85e6), (1e-5, 0.85 / np.sqrt(1e-5))],
                         ids=["tf1_epsilon_1e-12", "epsilon_1e-5"])
def test_layer_norm_of_a_constant_row_amplifies_gradients_by_gamma_over_sqrt_epsilon(epsilon, gain):
    """The tutorial's NaN: a blank MNIST row with zero state makes every LN input constant, so var = 0.

    The forward pass is harmless (z - mean = 0), but d LN / dz = gamma / sqrt(var + epsilon) * (I - 1/n)
    exactly, since var's own derivative 2 (z - mean) / n vanishes there. With TF1's epsilon of 1e-12 that
    is gamma * 1e6 per norm per step; a few blank rows compound it past float32 and training turns to NaN.
    epsilon = 1e-5 (Keras' LayerNormalization uses 1e-3) keeps the same Jacobian at a few hundred.
    """
    _, cell = built("layer_norm_lstm", norm_gain=0.85, epsilon=epsilon)
    # UNITS blank rows, each normalized on its own: one backward pass with the identity as output
    # gradients makes gradient row k = d normalized[k, k] / d z[k], so the rows form the Jacobian of one
    # blank row, without batch_jacobian's slow pfor graph.
    z = tf.zeros((UNITS, UNITS))
    with tf.GradientTape() as tape:
        tape.watch(z)
        normalized = cell.normalize(z, "state")
    jacobian = tape.gradient(normalized, z, output_gradients=tf.eye(UNITS)).numpy()
    np.testing.assert_allclose(jacobian, gain * (np.eye(UNITS) - 1 / UNITS), rtol=1e-5)
    # A direction with zero mean, the only kind LN passes on, comes out scaled by gamma / sqrt(epsilon).
    direction = np.random.default_rng(0).normal(size=UNITS)
    direction -= direction.mean()
    np.testing.assert_allclose(jacobian @ direction, gain * direction, rtol=1e-5, atol=1e-6 * gain)


@pytest.mark.parametrize("keep_prob", [0.5, 1.0])
def test_dropout_only_in_training(keep_prob):
    args = {"dropout_keep_prob": keep_prob, "dropout_prob_seed": 1}
    rnn, cell = built("layer_norm_lstm", **args)
    perturb(cell)
    x = sequence()
    undropped = reference("layer_norm_lstm", args, cell, x)
    for training in (None, False):
        np.testing.assert_allclose(rnn(x, training=training), undropped, rtol=1e-5, atol=1e-6)
    assert np.allclose(rnn(x, training=True), undropped, rtol=1e-5, atol=1e-6) == (keep_prob == 1.0)


BAD_ARGUMENTS = [  # (cell, num_units, arguments, the start of the message)
    pytest.param("lstmm", 8, {}, r"cell must be one of basic_rnn, basic_lstm, lstm, gru, layer_norm_lstm, got 'lstmm'",
                 id="unknown-cell"),
    pytest.param("gru", 31, {"forget_bias": 1.0},
                 "gru argument must be one of activation, kernel_initializer, bias_initializer, got 'forget_bias'",
                 id="unknown-argument"),
    pytest.param("gru", 8, {"kernel_initializer": "glorot"}, "kernel_initializer must be None or a Keras initializer "
                 "name such as 'glorot_uniform' or 'zeros', got 'glorot'$", id="unknown-kernel_initializer"),
    pytest.param("basic_rnn", 0, {}, "num_units must be a positive integer, got 0", id="num_units-0"),
    pytest.param("layer_norm_lstm", 8, {"dropout_keep_prob": 0}, r"dropout_keep_prob must be a number in \(0, 1\]",
                 id="dropout_keep_prob-0"),
    pytest.param("layer_norm_lstm", 8, {"dropout_keep_prob": 1.5}, r"dropout_keep_prob must be a number in \(0, 1\]",
                 id="dropout_keep_prob-1.5"),
    pytest.param("layer_norm_lstm", 8, {"dropout_prob_seed": -1}, "dropout_prob_seed must be an integer >= 0",
                 id="negative-dropout_prob_seed"),
    pytest.param("layer_norm_lstm", 8, {"epsilon": 0}, "epsilon must be a finite number > 0", id="epsilon-0"),
    pytest.param("layer_norm_lstm", 8, {"bias_initializer": "ones"},
                 "bias_initializer must be one of glorot_uniform, zeros, got 'ones'$", id="bias_initializer-ones"),
    pytest.param("basic_lstm", 8, {"activation": "tanhh"}, "activation must be None or a Keras activation name",
                 id="unknown-activation"),
    pytest.param("lstm", 8, {"proj_clip": 1.0}, "proj_clip must be None when num_proj is None",
                 id="proj_clip-without-num_proj"),
]


@pytest.mark.parametrize("name, num_units, args, message", BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_usage_errors_naming_the_parameter(name, num_units, args, message):
    with pytest.raises(UsageError, match="^" + message) as info:
        cells.build(name, num_units, **args)
    assert "\n" not in str(info.value)
