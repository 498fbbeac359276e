"""The tutorial's five TF1 cells as Keras RNN cells, with TF1's argument names and math.

Each cell projects ``concat([x, h])`` with one kernel, as ``tf.contrib.rnn`` did, with TF1's
default initializers (Glorot-uniform kernels, zero biases; GRU gate bias 1.0), so a TF1 reader
recognises every weight. Gate order is TF1's ``i, j, f, o`` (j is the candidate).
"""
import inspect

from rnn_core import errors
from rnn_core.compat import keras, tf

_glorot = "glorot_uniform"


class _Cell(keras.layers.Layer):
    """Shared by the five cells: num_units, activation (None means tanh, as in TF1), the kernel."""

    def __init__(self, num_units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.num_units = errors.positive_int("num_units", num_units)
        try:
            self.activation = tf.math.tanh if activation is None else keras.activations.get(activation)
        except ValueError:
            raise errors.UsageError(f"activation must be None or a Keras activation name such as "
                                    f"'tanh' or 'relu', got {activation!r}") from None
        self._activation_arg = activation

    @property
    def state_size(self):
        return [self.num_units]

    @property
    def output_size(self):
        return self.num_units

    def _kernel(self, input_dim, columns, name="kernel", initializer=None):
        return self.add_weight(name=name, shape=(input_dim + self.state_size[-1], columns),
                               initializer=initializer or _glorot)

    def _bias(self, columns, name="bias", value=0.0, initializer=None):
        return self.add_weight(name=name, shape=(columns,), initializer=initializer or keras.initializers.Constant(value))

    def get_config(self):
        args = inspect.signature(type(self).__init__).parameters
        config = {k: getattr(self, k) for k in args if k not in ("self", "kwargs", "activation")}
        return {**super().get_config(), **config, "activation": self._activation_arg}


def _initializer(name, value):
    """None (the cell's TF1 default) or a Keras initializer given by name (a name, so get_config stays
    serializable); anything else is a one-line error."""
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        keras.initializers.get(value)
    except (ValueError, TypeError):
        raise errors.UsageError(f"{name} must be None or a Keras initializer name such as 'glorot_uniform' or "
                                f"'zeros', got {value!r}") from None
    return value


class BasicRNNCell(_Cell):
    """Vanilla RNN (TF1 ``BasicRNNCell``).

        h_t = act(W [x_t, h_{t-1}] + b)
    """

    def build(self, input_shape):
        self.kernel = self._kernel(input_shape[-1], self.num_units)
        self.bias = self._bias(self.num_units)
        self.built = True

    def call(self, inputs, states, training=None):
        h = self.activation(tf.matmul(tf.concat([inputs, states[0]], 1), self.kernel) + self.bias)
        return h, [h]


class BasicLSTMCell(_Cell):
    """LSTM without peepholes (TF1 ``BasicLSTMCell``); state (c, h).

        i, j, f, o = split(W [x_t, h_{t-1}] + b)
        c_t = c_{t-1} * sigmoid(f + forget_bias) + sigmoid(i) * act(j)
        h_t = act(c_t) * sigmoid(o)

    ``forget_bias`` is a constant added in every forward pass, not the bias' initial value: the
    learned bias b starts at zero and the shift stays however b moves.
    """

    def __init__(self, num_units, forget_bias=1.0, activation=None, **kwargs):
        super().__init__(num_units, activation, **kwargs)
        self.forget_bias = errors.real("forget_bias", forget_bias)

    @property
    def state_size(self):
        return [self.num_units, self.num_units]

    def build(self, input_shape):
        self.kernel = self._kernel(input_shape[-1], 4 * self.num_units)
        self.bias = self._bias(4 * self.num_units)
        self.built = True

    def call(self, inputs, states, training=None):
        c, h = states
        i, j, f, o = tf.split(tf.matmul(tf.concat([inputs, h], 1), self.kernel) + self.bias, 4, axis=1)
        c = c * tf.sigmoid(f + self.forget_bias) + tf.sigmoid(i) * self.activation(j)
        h = self.activation(c) * tf.sigmoid(o)
        return h, [c, h]


class LSTMCell(_Cell):
    """LSTM with optional peepholes, cell clipping and projection (TF1 ``LSTMCell``); state (c, m).

        i, j, f, o = split(W [x_t, m_{t-1}] + b)
        c_t = sigmoid(f + forget_bias [+ w_f_diag * c_{t-1}]) * c_{t-1}
              + sigmoid(i [+ w_i_diag * c_{t-1}]) * act(j)         then clip to +-cell_clip
        m_t = sigmoid(o [+ w_o_diag * c_t]) * act(c_t)              then m_t @ W_proj, clip to +-proj_clip
    """

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None, num_proj=None,
                 proj_clip=None, forget_bias=1.0, activation=None, **kwargs):
        super().__init__(num_units, activation, **kwargs)
        self.use_peepholes = bool(use_peepholes)
        self.initializer = _initializer("initializer", initializer)
        self.cell_clip = None if cell_clip is None else errors.positive_float("cell_clip", cell_clip)
        self.num_proj = None if num_proj is None else errors.positive_int("num_proj", num_proj)
        self.proj_clip = None if proj_clip is None else errors.positive_float("proj_clip", proj_clip)
        errors.require(proj_clip is None or num_proj is not None, "proj_clip", "None when num_proj is None", proj_clip)
        self.forget_bias = errors.real("forget_bias", forget_bias)

    @property
    def state_size(self):
        return [self.num_units, self.num_proj or self.num_units]

    @property
    def output_size(self):
        return self.num_proj or self.num_units

    def build(self, input_shape):
        self.kernel = self._kernel(input_shape[-1], 4 * self.num_units, initializer=self.initializer)
        self.bias = self._bias(4 * self.num_units)
        if self.use_peepholes:
            self.w_f_diag, self.w_i_diag, self.w_o_diag = (
                self.add_weight(name=n, shape=(self.num_units,), initializer=self.initializer or _glorot)
                for n in ("w_f_diag", "w_i_diag", "w_o_diag"))
        if self.num_proj:
            self.proj_kernel = self.add_weight(name="projection_kernel", shape=(self.num_units, self.num_proj),
                                               initializer=self.initializer or _glorot)
        self.built = True

    def call(self, inputs, states, training=None):
        c_prev, m_prev = states
        i, j, f, o = tf.split(tf.matmul(tf.concat([inputs, m_prev], 1), self.kernel) + self.bias, 4, axis=1)
        if self.use_peepholes:
            f = f + self.w_f_diag * c_prev
            i = i + self.w_i_diag * c_prev
        c = tf.sigmoid(f + self.forget_bias) * c_prev + tf.sigmoid(i) * self.activation(j)
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            o = o + self.w_o_diag * c
        m = tf.sigmoid(o) * self.activation(c)
        if self.num_proj:
            m = tf.matmul(m, self.proj_kernel)
            if self.proj_clip is not None:
                m = tf.clip_by_value(m, -self.proj_clip, self.proj_clip)
        return m, [c, m]


class GRUCell(_Cell):
    """Gated recurrent unit (TF1 ``GRUCell``, reset gate applied before the candidate matmul).

        r, u = split(sigmoid(W_g [x_t, h_{t-1}] + b_g))      b_g starts at 1.0, as in TF1
        c    = act(W_c [x_t, r * h_{t-1}] + b_c)
        h_t  = u * h_{t-1} + (1 - u) * c

    kernel_initializer and bias_initializer, as in TF1, replace those defaults for both matmuls.
    """

    def __init__(self, num_units, activation=None, kernel_initializer=None, bias_initializer=None, **kwargs):
        super().__init__(num_units, activation, **kwargs)
        self.kernel_initializer = _initializer("kernel_initializer", kernel_initializer)
        self.bias_initializer = _initializer("bias_initializer", bias_initializer)

    def build(self, input_shape):
        kernel, bias = self.kernel_initializer, self.bias_initializer
        self.gate_kernel = self._kernel(input_shape[-1], 2 * self.num_units, "gates_kernel", kernel)
        self.gate_bias = self._bias(2 * self.num_units, "gates_bias", value=1.0, initializer=bias)
        self.candidate_kernel = self._kernel(input_shape[-1], self.num_units, "candidate_kernel", kernel)
        self.candidate_bias = self._bias(self.num_units, "candidate_bias", initializer=bias)
        self.built = True

    def call(self, inputs, states, training=None):
        h = states[0]
        gates = tf.sigmoid(tf.matmul(tf.concat([inputs, h], 1), self.gate_kernel) + self.gate_bias)
        r, u = tf.split(gates, 2, axis=1)
        c = self.activation(tf.matmul(tf.concat([inputs, r * h], 1), self.candidate_kernel) + self.candidate_bias)
        h = u * h + (1 - u) * c
        return h, [h]


LAYER_NORMS = ("input", "transform", "forget", "output", "state")


class LayerNormBasicLSTMCell(_Cell):
    """LSTM with layer normalization (Ba et al. 2016) and recurrent dropout (Semeniuta et al. 2016),
    as TF1's ``tf.contrib.rnn.LayerNormBasicLSTMCell`` had it; state (c, h).

        i, j, f, o = split(W [x_t, h_{t-1}] [+ b])                  b unless layer_norm (or use_bias)
        i, j, f, o = LN_input(i), LN_transform(j), LN_forget(f), LN_output(o)
        g   = dropout(act(j), dropout_keep_prob)                    training only
        c_t = LN_state(c_{t-1} * sigmoid(f + forget_bias) + sigmoid(i) * g)
        h_t = act(c_t) * sigmoid(o)

        LN(z) = gamma * (z - mean(z)) / sqrt(var(z) + epsilon) + beta   over the units,
        gamma starting at norm_gain, beta at norm_shift.

    ``epsilon`` defaults to TF1's 1e-12. When a row of the input and the state are all zero (the
    top rows of an MNIST digit, with h_0 = c_0 = 0), every LN input is constant, var = 0, and the
    backward pass multiplies gradients by gamma / sqrt(1e-12) = 1e6 per norm per step: this is the
    tutorial's NaN. ``LN`` is ``tf.nn.moments`` + ``tf.nn.batch_normalization``, TF1's own ops.
    Without layer norm TF1 added a bias that ``get_variable`` initialized Glorot-uniform, like the
    kernel; ``use_bias`` (not in TF1) adds it under layer norm too, and ``bias_initializer`` (not in
    TF1) can start it at zero: two of the remedies the NaN tests measure.
    """

    def __init__(self, num_units, forget_bias=1.0, activation=None, layer_norm=True, norm_gain=1.0,
                 norm_shift=0.0, dropout_keep_prob=1.0, dropout_prob_seed=None, epsilon=1e-12, use_bias=None,
                 bias_initializer=_glorot, **kwargs):
        super().__init__(num_units, activation, **kwargs)
        self.forget_bias = errors.real("forget_bias", forget_bias)
        self.layer_norm = bool(layer_norm)
        self.norm_gain = errors.real("norm_gain", norm_gain)
        self.norm_shift = errors.real("norm_shift", norm_shift)
        errors.require(isinstance(dropout_keep_prob, (int, float)) and 0 < dropout_keep_prob <= 1,
                       "dropout_keep_prob", "a number in (0, 1]", dropout_keep_prob)
        self.dropout_keep_prob = float(dropout_keep_prob)
        self.dropout_prob_seed = None if dropout_prob_seed is None else errors.non_negative_int(
            "dropout_prob_seed", dropout_prob_seed)
        self.epsilon = errors.positive_float("epsilon", epsilon)
        self.use_bias = not self.layer_norm if use_bias is None else bool(use_bias)
        errors.choice("bias_initializer", bias_initializer, (_glorot, "zeros"))
        self.bias_initializer = bias_initializer

    @property
    def state_size(self):
        return [self.num_units, self.num_units]

    def build(self, input_shape):
        self.kernel = self._kernel(input_shape[-1], 4 * self.num_units)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(4 * self.num_units,), initializer=self.bias_initializer)
        if self.layer_norm:
            self.norms = {name: (self._bias(self.num_units, name + "_gamma", self.norm_gain),
                                 self._bias(self.num_units, name + "_beta", self.norm_shift))
                          for name in LAYER_NORMS}
        self.built = True

    def normalize(self, z, name):
        gamma, beta = self.norms[name]
        mean, variance = tf.nn.moments(z, axes=[1], keepdims=True)
        return tf.nn.batch_normalization(z, mean, variance, beta, gamma, self.epsilon)

    def call(self, inputs, states, training=None):
        c, h = states
        projection = tf.matmul(tf.concat([inputs, h], 1), self.kernel)
        if self.use_bias:
            projection = projection + self.bias
        i, j, f, o = tf.split(projection, 4, axis=1)
        if self.layer_norm:
            i, j, f, o = (self.normalize(z, name) for z, name in zip((i, j, f, o), LAYER_NORMS))
        g = self.activation(j)
        if training and self.dropout_keep_prob < 1.0:
            g = tf.nn.dropout(g, rate=1.0 - self.dropout_keep_prob, seed=self.dropout_prob_seed)
        c = c * tf.sigmoid(f + self.forget_bias) + tf.sigmoid(i) * g
        if self.layer_norm:
            c = self.normalize(c, "state")
        h = self.activation(c) * tf.sigmoid(o)
        return h, [c, h]


CELLS = {"basic_rnn": BasicRNNCell, "basic_lstm": BasicLSTMCell, "lstm": LSTMCell, "gru": GRUCell,
         "layer_norm_lstm": LayerNormBasicLSTMCell}


def arguments(cell):
    """The TF1 arguments a cell accepts besides num_units."""
    return [p for p in inspect.signature(CELLS[cell].__init__).parameters if p not in ("self", "num_units", "kwargs")]


def build(cell, num_units, **cell_args):
    """A cell by registry name with TF1 arguments; unknown names and arguments are one-line errors."""
    errors.choice("cell", cell, list(CELLS))
    for arg in cell_args:
        errors.require(arg in arguments(cell), f"{cell} argument", "one of " + ", ".join(arguments(cell)), arg)
    return CELLS[cell](num_units, name="cell", **cell_args)
