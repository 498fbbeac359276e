"""The one training loop, used by the CLI, the tests and the benchmarks.

A whole epoch is one compiled call (a ``tf.while_loop`` over batches, XLA by default): Python
is entered once per epoch, not once per step. Every step checks its loss and each gradient for
NaN/Inf with ``is_finite`` reductions, which XLA compiles (``check_numerics`` does not raise
inside ``jit_compile``), and brings the flags back to the host, so a non-finite run stops at the
step where it happened, with the weights from before it and the variables that went bad.
"""
import functools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnn_core import errors
from rnn_core import model as model_lib
from rnn_core.compat import keras, tf, variable_name

LOG_EVERY = 250


class TF1Adam:
    """TF1's ``AdamOptimizer`` (epsilon 1e-8) on TF's own fused kernel, ``ResourceApplyAdam``.

    The tutorial's optimizer, identical on every TF and Keras version, so a version change the
    suite reports is a change in the cells or TensorFlow, never in Keras' optimizer defaults.
    """

    def __init__(self, variables, lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.variables, self.lr, self.beta1, self.beta2, self.epsilon = variables, lr, beta1, beta2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.iterations = tf.Variable(0.0, trainable=False)

    def apply(self, grads):
        t = self.iterations.assign_add(1.0)
        for var, m, v, g in zip(self.variables, self.m, self.v, grads):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=self.beta1 ** t, beta2_power=self.beta2 ** t,
                lr=self.lr, beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon, grad=g)
        return t


class Trainer:
    """A model, its optimizer and the compiled functions that train and evaluate it."""

    def __init__(self, config, seed=0, jit_compile=True, unroll=False, implementation="cell"):
        errors.non_negative_int("seed", seed)
        keras.utils.set_random_seed(seed)
        self.config = config
        self.model = model_lib.build(config, unroll=unroll, implementation=implementation)
        self.variables = list(self.model.trainable_variables)
        self.variable_names = [variable_name(v) for v in self.variables]
        self.adam = TF1Adam(self.variables, config.lr)
        # partial: TF counts retraces per Python function code, so bound methods of many Trainers
        # (one per configuration in compare) would warn of "excessive retracing"; a partial is its own key.
        self.train_step = tf.function(functools.partial(self._train_step), jit_compile=jit_compile)
        self.train_steps = tf.function(functools.partial(self._train_steps), jit_compile=jit_compile)
        # Once an epoch: not worth an XLA compile.
        self.predict = tf.function(functools.partial(self._predict))

    def gradients(self, inputs, labels):
        with tf.GradientTape() as tape:
            loss, accuracy = model_lib.loss_and_accuracy(self.model(inputs, training=True), labels)
        return loss, accuracy, tape.gradient(loss, self.variables)

    def _train_step(self, inputs, labels, apply_nonfinite=False):
        """One Adam step; returns loss, accuracy, global gradient norm, finite flags [loss, *grads, norm].

        The norm has its own flag: finite gradients whose squares overflow give an infinite norm,
        and clipping by an infinite norm turns every gradient into NaN.
        """
        loss, accuracy, grads = self.gradients(inputs, labels)
        grad_norm = tf.linalg.global_norm(grads)
        finite = tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in [loss, *grads, grad_norm]])
        if self.config.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm, use_norm=grad_norm)
        tf.cond(tf.reduce_all(finite) | apply_nonfinite, lambda: self.adam.apply(grads), lambda: self.adam.iterations)
        return loss, accuracy, grad_norm, finite

    def _train_steps(self, x, y, order, num_steps, apply_nonfinite=False):
        """Up to num_steps batches of order; stops after the first non-finite step unless apply_nonfinite.
        Returns the steps done, the first non-finite step's flags (all true if none), and per-step
        losses, accuracies and gradient norms."""
        batch = self.config.batch_size
        capacity = order.shape[0] // batch  # static, as XLA needs for the TensorArrays
        record = [tf.TensorArray(tf.float32, capacity) for _ in range(3)]
        finite = tf.ones(len(self.variables) + 2, tf.bool)

        def more(i, finite, *_):
            return (i < num_steps) & (tf.reduce_all(finite) | apply_nonfinite)

        def step(i, finite, losses, accuracies, norms):
            index = tf.slice(order, [i * batch], [batch])
            loss, accuracy, norm, step_finite = self._train_step(tf.gather(x, index), tf.gather(y, index),
                                                                 apply_nonfinite)
            # The first non-finite step's flags stay: training on past it (keep-going) must not replace them.
            finite = tf.where(tf.reduce_all(finite), step_finite, finite)
            return i + 1, finite, losses.write(i, loss), accuracies.write(i, accuracy), norms.write(i, norm)

        done, finite, *record = tf.while_loop(more, step, [tf.constant(0), finite, *record])
        return done, finite, *(r.stack() for r in record)

    def _predict(self, x):
        return tf.argmax(self.model(x, training=False), 1)


@dataclass
class Run:
    """One configuration trained once: its per-epoch record, per-step curves and what went wrong."""
    config: str
    seed: int
    hparams: dict
    dataset: dict
    epochs: list = field(default_factory=list)
    steps: dict = field(default_factory=lambda: {"loss": [], "accuracy": [], "grad_norm": []})
    nonfinite: dict | None = None
    wall_seconds: float = 0.0

    @property
    def final(self):
        last = self.epochs[-1] if self.epochs else {}
        return {k: last.get(k) for k in ("train_loss", "test_accuracy", "test_min_batch_accuracy")}

    def history(self):
        """Everything a seed determines: the run without its timings."""
        epochs = [{k: v for k, v in e.items() if k != "sec_per_iter"} for e in self.epochs]
        return {"epochs": epochs, "steps": self.steps, "nonfinite": self.nonfinite}

    def to_dict(self):
        """JSON-safe: NaN and Inf become null (JSON has neither)."""
        return _json_safe({**asdict(self), "final": self.final})


def batch_orders(seed, num_examples, steps_per_epoch, batch_size):
    """Each epoch's example order, from the seed alone: the same batches on every TF version."""
    rng = np.random.RandomState(seed)
    while True:
        yield rng.permutation(num_examples)[:steps_per_epoch * batch_size].astype(np.int32)


def fit(config, dataset, seed=0, *, logdir=None, log=print, log_every=LOG_EVERY, progress=None,
        stop_on_nonfinite=True, jit_compile=True, unroll=False, trainer=None):
    """Train config on dataset with the given seed; returns a Run.

    Prints the tutorial's lines, ``[trn] ep E, step S, loss L, accu A, sec/iter T`` every
    log_every steps (loss: mean over the window; accu: the window's minimum batch accuracy, as the
    tutorial's np.amin) and ``[tst] ep E, step S, accu A, sec/iter T, mean M`` per epoch (accu: the
    minimum accuracy over full test batches; mean: accuracy over every test image). With logdir,
    writes TensorBoard scalars under the tutorial's tags to logdir/train_NAME and logdir/test_NAME.
    A given trainer (built for config and seed) is trained in place, so a caller can inspect it.
    """
    batch = config.batch_size
    steps_per_epoch = len(dataset.train_y) // batch
    errors.require(steps_per_epoch >= 1, "batch_size", f"at most the {len(dataset.train_y)} training images",
                   batch)
    log = log or (lambda line: None)
    run = Run(config.name, seed, config.hparams(), dataset.summary())
    started = time.perf_counter()
    trainer = trainer or Trainer(config, seed, jit_compile=jit_compile, unroll=unroll)
    x, y = tf.constant(dataset.train_x), tf.constant(dataset.train_y)
    test_x = tf.constant(dataset.test_x)
    writers = _writers(logdir, config.name)
    orders = batch_orders(seed, len(dataset.train_y), steps_per_epoch, batch)
    apply_nonfinite = tf.constant(not stop_on_nonfinite)
    window = {"loss": [], "accuracy": []}
    # Compile outside the timed region: same shapes, zero steps.
    trainer.train_steps(x, y, tf.range(steps_per_epoch * batch), tf.constant(0), apply_nonfinite)
    try:
        for epoch in range(1, config.epochs + 1):
            order = tf.constant(next(orders))
            tick = time.perf_counter()
            done, finite, losses, accuracies, norms = trainer.train_steps(
                x, y, order, tf.constant(steps_per_epoch), apply_nonfinite)
            done, finite = int(done), finite.numpy()
            losses, accuracies, norms = (a.numpy()[:done].tolist() for a in (losses, accuracies, norms))
            sec_per_iter = (time.perf_counter() - tick) / max(done, 1)
            first_step = len(run.steps["loss"])
            for key, values in (("loss", losses), ("accuracy", accuracies), ("grad_norm", norms)):
                run.steps[key].extend(values)
            for s, (loss, accuracy) in enumerate(zip(losses, accuracies), start=first_step + 1):
                window["loss"].append(loss)
                window["accuracy"].append(accuracy)
                if s % log_every == 0:
                    log(f"[trn] ep {epoch:d}, step {s:d}, loss {np.mean(window['loss']):f}, "
                        f"accu {np.min(window['accuracy']):f}, sec/iter {sec_per_iter:f}")
                    window = {"loss": [], "accuracy": []}
            tick = time.perf_counter()
            correct = trainer.predict(test_x).numpy() == dataset.test_y
            test_batches = max(len(correct) // batch, 1)
            test_sec = (time.perf_counter() - tick) / test_batches
            min_batch = float(correct[:test_batches * batch].reshape(test_batches, -1).mean(1).min())
            record = {"epoch": epoch, "step": len(run.steps["loss"]), "train_loss": float(np.mean(losses)),
                      "train_accuracy": float(np.mean(accuracies)), "test_accuracy": float(correct.mean()),
                      "test_min_batch_accuracy": min_batch, "sec_per_iter": sec_per_iter}
            run.epochs.append(record)
            log(f"[tst] ep {epoch:d}, step {record['step']:d}, accu {min_batch:f}, sec/iter {test_sec:f}, "
                f"mean {record['test_accuracy']:f}")
            _write_scalars(writers, first_step, losses, accuracies, record)
            if progress:
                progress(config.name, epoch, config.epochs)
            if run.nonfinite is None and not finite.all():
                # Which step: the first whose loss or gradient norm is non-finite (a non-finite gradient
                # makes the norm so); with keep-going the loop ran on past it.
                bad = next(i for i, (loss, norm) in enumerate(zip(losses, norms))
                           if not (math.isfinite(loss) and math.isfinite(norm)))
                run.nonfinite = _nonfinite(first_step + bad, finite, trainer.variable_names)
                log(f"[nan] step {run.nonfinite['step']}: non-finite {run.nonfinite['where']} in "
                    f"{', '.join(run.nonfinite['variables']) or 'the loss'}")
                if stop_on_nonfinite:
                    break
    finally:
        for writer in writers.values():
            writer.flush()
        run.wall_seconds = time.perf_counter() - started
    return run


def _nonfinite(step, finite, names):
    """Step index (0 = the first update) where the loss, gradients or their norm stopped being finite, and
    the variables whose gradients were non-finite there."""
    bad = [name for name, ok in zip(names, finite[1:-1]) if not ok]
    where = "loss" if not finite[0] else "gradients" if bad else "gradient norm"
    return {"step": step, "where": where, "variables": bad}


def _writers(logdir, name):
    if logdir is None:
        return {}
    Path(logdir).mkdir(parents=True, exist_ok=True)
    return {part: tf.summary.create_file_writer(str(Path(logdir) / f"{part}_{name}")) for part in ("train", "test")}


def _write_scalars(writers, first_step, losses, accuracies, record):
    if not writers:
        return
    with writers["train"].as_default():
        for s, (loss, accuracy) in enumerate(zip(losses, accuracies), start=first_step + 1):
            tf.summary.scalar("train accuracy", accuracy, step=s)
            tf.summary.scalar("loss", loss, step=s)
    with writers["test"].as_default():
        tf.summary.scalar("test accuracy", record["test_min_batch_accuracy"], step=record["step"])
        tf.summary.scalar("test mean accuracy", record["test_accuracy"], step=record["step"])
    for writer in writers.values():
        writer.flush()


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
