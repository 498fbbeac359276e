"""Per-iteration time of every configuration and implementation, beside the floor of its matmuls.

A train step is the tutorial's iteration: forward over 28 rows, backward, the finite checks and
Adam, on one batch of 128 real digits; an inference step is the forward pass alone. Each
implementation is checked against the eager cell loop (tests/reference.py) before it is timed,
and timed only after its trace and compile (a warm-up call outside the benchmark).

The floor is the same matrix multiplications with everything else removed (same shapes, same
count, the same step-to-step dependency, compiled with XLA): what the BLAS would need if the cell
cost nothing. ``times_floor`` in each benchmark's extra_info is the step's median over the floor's
median; the session ends with a table of both (conftest.py). Run:

    pytest -m "benchmark and not gpu" --benchmark-autosave             # CPU
    pytest -m gpu --benchmark-autosave                                  # GPU
    pytest -m gpu --benchmark-compare --benchmark-compare-fail=mean:10%
"""
import pytest

from rnn_core import configs
from rnn_core.compat import keras, tf
from rnn_core.data import COLS, ROWS

import reference

pytestmark = pytest.mark.benchmark
DEVICES = [pytest.param("/CPU:0", id="cpu"), pytest.param("/GPU:0", id="gpu", marks=pytest.mark.gpu)]
STEPS = ("train", "inference")
# Output width of each matmul a cell runs per row, in units of num_units (GRU: gates, then candidate).
MATMULS = {"basic_rnn": (1,), "basic_lstm": (4,), "gru": (2, 1), "layer_norm_lstm": (4,)}


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    """The device every benchmark of the parameter runs on. On a GPU, TF32 matmuls are off: they
    change float32 results by about 1e-3, past the reference check, and at 31 units a matmul is
    bound by launch latency, not arithmetic."""
    if request.param.startswith("/GPU"):
        tf.config.experimental.enable_tensor_float_32_execution(False)
    return request.param


@pytest.fixture(scope="module")
def digits(device):
    """One batch of 128 real digits and their labels, copied to the device."""
    x, y, _ = reference.batch(128)
    with tf.device(device):
        return tf.identity(x), tf.identity(y)


def record(request, benchmark, step, what, device, per=1):
    """Keep the median (per training step, for a benchmark of `per` steps) for the session's table,
    beside the floor of its step kind."""
    floors = request.config.rnn_benchmark_floors
    median = benchmark.stats.stats.median / per
    if what in MATMULS:
        floors[step, what, device] = median
        return
    floor = floors.get(("inference" if step == "inference" else "train", configs.get(what[0]).cell, device))
    benchmark.extra_info.update(ms_per_iter=median * 1e3)
    if floor:
        benchmark.extra_info.update(floor_ms=floor * 1e3, times_floor=median / floor)
    request.config.rnn_benchmark_rows.append((step, *what, device, median, floor))


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("cell", MATMULS)
def test_matmul_floor(benchmark, request, device, digits, cell, step):
    """The cell's matmuls alone; runs before the steps so their table has a floor to compare with."""
    x, _ = digits
    units = configs.CONFIGS["vanilla"].num_units
    init = keras.initializers.GlorotUniform(seed=0)
    with tf.device(device):
        kernels = [tf.Variable(init((COLS + units, width * units))) for width in MATMULS[cell]]

    @tf.function(jit_compile=True)
    def matmuls(x):
        with tf.GradientTape() as tape:
            h = tf.zeros((x.shape[0], units))
            for row in range(ROWS):
                inputs = tf.concat([x[:, row], h], 1)
                h = tf.add_n([tf.matmul(inputs, kernel)[:, :units] for kernel in kernels])
        # Backward: each forward matmul's two (input and kernel gradient); inference stops at h.
        return tape.gradient(h, kernels) if step == "train" else h

    run = lambda: tf.nest.map_structure(lambda t: t.numpy(), matmuls(x))
    with tf.device(device):
        run()
        benchmark(run)
    record(request, benchmark, step, cell, device)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("name, implementation", reference.cases())
def test_step(benchmark, request, device, digits, name, implementation, step):
    """One training iteration (or inference step) of the configuration as the implementation runs it."""
    x, y = digits
    with tf.device(device):
        trainer = reference.trainer(name, implementation)
        reference.assert_matches(name, implementation, trainer, x[:16], y[:16])
        if step == "train":
            # ln_lstm's gradients are NaN from the first step: time the full update anyway, as the tutorial did.
            apply_nonfinite = tf.constant(True)
            run = lambda: trainer.train_step(x, y, apply_nonfinite)[0].numpy()
        else:
            jit_compile = reference.IMPLEMENTATIONS[implementation][0]
            forward = tf.function(lambda x: trainer.model(x, training=False), jit_compile=jit_compile)
            run = lambda: forward(x).numpy()
        run()
        benchmark(run)
    record(request, benchmark, step, (name, implementation), device)


# The trainer's own path for every configuration; a Python call per step beside it for two.
EPOCH_CASES = [*((name, "while_loop") for name in configs.CONFIGS), ("vanilla", "python"), ("lstm", "python")]


@pytest.mark.parametrize("name, loop", EPOCH_CASES)
def test_epoch(benchmark, request, device, name, loop):
    """An epoch of mnist-5k (31 steps) under XLA, per step: the trainer's one compiled call with a
    tf.while_loop over batches, against a Python call per step, as a Keras fit loop would make.
    Non-finite steps are applied, as in test_step, so ln_lstm runs the whole epoch."""
    from rnn_core import data, train
    dataset = data.load("mnist-5k")
    with tf.device(device):
        trainer = reference.trainer(name, "cell_xla")
        x, y = tf.constant(dataset.train_x), tf.constant(dataset.train_y)
        batch = trainer.config.batch_size
        steps = len(dataset.train_y) // batch
        order = next(train.batch_orders(0, len(dataset.train_y), steps, batch))
        apply_nonfinite = tf.constant(True)
        if loop == "while_loop":
            run = lambda: trainer.train_steps(x, y, tf.constant(order), tf.constant(steps), apply_nonfinite)[1].numpy()
        else:
            batches = [(tf.gather(x, order[i * batch:(i + 1) * batch]), tf.gather(y, order[i * batch:(i + 1) * batch]))
                       for i in range(steps)]
            run = lambda: [trainer.train_step(bx, by, apply_nonfinite)[3].numpy() for bx, by in batches]
        run()
        benchmark(run)
    benchmark.extra_info.update(steps=steps)
    record(request, benchmark, f"epoch/{steps}, {loop}", (name, "cell_xla"), device, per=steps)
