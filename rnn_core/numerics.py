"""Where the tutorial's NaN starts, and what each remedy does about it.

``diagnose`` trains until the first non-finite step, then replays that step eagerly with every
layer norm of the cell recorded: forward values, the variance each norm saw, the factor
gamma / sqrt(var + epsilon) it applied, and the gradient arriving at and leaving each norm. The
origin is the first norm, in the order backpropagation visits them, whose outgoing gradient is
non-finite while its incoming gradient is finite: the op that made the NaN, not the first
variable in a list.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from rnn_core import configs, train
from rnn_core import model as model_lib
from rnn_core.cells import LAYER_NORMS
from rnn_core.compat import tf

# Each remedy as changes to ln_lstm. The tutorial's three suggestions, alone and together, then
# beyond it: a larger layer-norm epsilon (PyTorch's default 1e-5, Keras' 1e-3) and a bias under
# the norm, started at zero (Keras' habit) or Glorot-uniform (how TF1 started this cell's bias
# without layer norm).
REMEDIES = {
    "none": {},
    "lr_1e-4": {"lr": 1e-4},
    "clip_5": {"clip_norm": 5.0},
    "lr_clip": {"lr": 1e-4, "clip_norm": 5.0},
    "gain": {"cell_args": {"norm_gain": 0.85}},
    "shift": {"cell_args": {"norm_shift": 0.15}},
    "gain_shift": {"cell_args": {"norm_gain": 0.85, "norm_shift": 0.15}},
    "tutorial_combo": {"lr": 1e-4, "clip_norm": 5.0, "cell_args": {"norm_gain": 0.85, "norm_shift": 0.15}},
    "eps_1e-5": {"cell_args": {"epsilon": 1e-5}},
    "eps_1e-3": {"cell_args": {"epsilon": 1e-3}},
    "bias_zeros": {"cell_args": {"use_bias": True, "bias_initializer": "zeros"}},
    "bias_glorot": {"cell_args": {"use_bias": True}},
}


# The failure lr and clipping exist for, found by measurement: a ReLU vanilla RNN at lr 0.1 has
# exploding gradients (norms past 1e4) and loss spikes (past 1e3) within five epochs on mnist-5k.
EXPLODING = configs.Config("relu_rnn_lr0.1", "basic_rnn", {"activation": "relu"}, lr=0.1)
EXPLODING_REMEDIES = {"none": {}, "lr_1e-2": {"lr": 1e-2}, "clip_5": {"clip_norm": 5.0}}
# A run diverged when a step's loss passed twice its starting point, chance level's ln(10): a model
# that learns never gets there, and one that explodes passes it on the way up.
DIVERGED_LOSS = 2 * math.log(10)


def exploding(name):
    return EXPLODING.replace(name=f"{EXPLODING.name}+{name}", **EXPLODING_REMEDIES[name])


def peak_loss(run):
    """The highest step loss of a run; infinite if it went non-finite."""
    return math.inf if run.nonfinite else float(max(run.steps["loss"]))


def remedy(name, base="ln_lstm"):
    """ln_lstm (or base) with the named remedy applied, named 'ln_lstm+remedy'."""
    config = configs.get(base)
    changes = dict(REMEDIES[name])
    cell_args = {**config.cell_args, **changes.pop("cell_args", {})}
    return config.replace(name=f"{config.name}+{name}", cell_args=cell_args, **changes)


@dataclass
class Origin:
    step: int
    pass_: str          # "forward" or "backward"
    layer_norm: str     # "input", "transform", "forget", "output" or "state"
    time_step: int      # 0-based row of the image
    op: str
    variance: float     # smallest per-example variance this norm saw
    zero_variance_examples: int
    epsilon: float
    factor: float       # largest gamma / sqrt(var + epsilon)
    gradient_in: float  # largest |gradient| arriving at the norm's output (backward)
    gradient_out: float | None  # largest finite |gradient| leaving toward its input, None if none

    def to_dict(self):
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        return d


def first_batch(dataset, config, seed, step=0):
    """The batch fit trains on at the given step, for the given seed."""
    steps_per_epoch = len(dataset.train_y) // config.batch_size
    orders = train.batch_orders(seed, len(dataset.train_y), steps_per_epoch, config.batch_size)
    for _ in range(step // steps_per_epoch):
        next(orders)
    at = (step % steps_per_epoch) * config.batch_size
    index = next(orders)[at:at + config.batch_size]
    return dataset.train_x[index], dataset.train_y[index]


def first_step_finite(config, dataset, seed=0):
    """Whether the very first gradient is finite (eager: no compile, a fraction of a second)."""
    trainer = train.Trainer(config, seed)
    inputs, labels = first_batch(dataset, config, seed)
    loss, _, grads = trainer.gradients(tf.constant(inputs), tf.constant(labels))
    return bool(all(tf.reduce_all(tf.math.is_finite(t)) for t in [loss, *grads, tf.linalg.global_norm(grads)]))


def trace(trainer, inputs, labels):
    """Replay one step eagerly, recording every layer-norm call ({name, row, z, out}); the loss; the tape.

    Keras calls the cell once more than there are rows, on row 0 before its loop, only to learn the
    output's shape; that call is left out, so each call's row is the image row it computed."""
    cell = trainer.model.rnn.cell
    calls, normalize = [], cell.normalize

    def recording(z, name):
        out = normalize(z, name)
        calls.append({"name": name, "z": z, "out": out})
        return out

    cell.normalize = recording
    try:
        with tf.GradientTape(persistent=True) as tape:
            logits = trainer.model(tf.constant(inputs), training=True)
            loss, _ = model_lib.loss_and_accuracy(logits, tf.constant(labels))
    finally:
        del cell.normalize
    calls = calls[len(calls) - inputs.shape[1] * len(LAYER_NORMS):]
    for index, call in enumerate(calls):
        call["row"] = index // len(LAYER_NORMS)
    return calls, loss, tape


def locate(trainer, inputs, labels, step):
    """The Origin of the first non-finite value in this step's layer norms; None if the step is finite
    or the cell has no layer norm."""
    cell = trainer.model.rnn.cell
    if not getattr(cell, "layer_norm", False):
        return None
    calls, loss, tape = trace(trainer, inputs, labels)
    for call in calls:
        if not np.isfinite(call["out"].numpy()).all():
            return _origin(cell, call, step, "forward", None, None)
    if not np.isfinite(loss.numpy()):
        return None
    grads = tape.gradient(loss, [c["out"] for c in calls] + [c["z"] for c in calls])
    outs, ins = grads[:len(calls)], grads[len(calls):]
    for call, g_out, g_in in reversed(list(zip(calls, outs, ins))):
        g_out = np.zeros(1) if g_out is None else g_out.numpy()
        g_in = np.zeros(1) if g_in is None else g_in.numpy()
        if np.isfinite(g_out).all() and not np.isfinite(g_in).all():
            return _origin(cell, call, step, "backward", g_out, g_in)
    return None


def diagnose(config, dataset, seed=0, epochs=1):
    """Train config until it goes non-finite (at most epochs) and locate where; None if it never does."""
    trainer = train.Trainer(config.replace(epochs=epochs), seed)
    run = train.fit(config.replace(epochs=epochs), dataset, seed, trainer=trainer, log=None)
    if run.nonfinite is None:
        return run, None
    inputs, labels = first_batch(dataset, config, seed, run.nonfinite["step"])
    return run, locate(trainer, inputs, labels, run.nonfinite["step"])


def fix_matrix(dataset, seeds, epochs, remedies=tuple(REMEDIES), base="ln_lstm"):
    """Each remedy trained for epochs on each seed: non-finite runs, first non-finite step, accuracy."""
    return [fix_row(name, [train.fit(remedy(name, base).replace(epochs=epochs), dataset, s, log=None) for s in seeds],
                    dataset, epochs, base) for name in remedies]


def fix_row(name, runs, dataset, epochs, base="ln_lstm"):
    """One row of the fix matrix from the remedy's runs, one per seed."""
    steps = [r.nonfinite["step"] for r in runs if r.nonfinite]
    finite = [r.final["test_accuracy"] for r in runs if not r.nonfinite]
    return {"remedy": name, "changes": REMEDIES[name], "seeds": [r.seed for r in runs], "epochs": epochs,
            "steps": len(dataset.train_y) // configs.get(base).batch_size * epochs,
            "nonfinite_runs": len(steps), "first_nonfinite_step": min(steps) if steps else None,
            "last_nonfinite_step": max(steps) if steps else None,
            "test_accuracy": float(np.mean(finite)) if finite else None, "accuracies": finite}


def _origin(cell, call, step, pass_, g_out, g_in):
    z = call["z"].numpy().astype(np.float64)
    variance = z.var(axis=1)
    gamma = np.abs(cell.norms[call["name"]][0].numpy()).max()
    finite_out = None
    if g_in is not None:
        finite = np.abs(g_in[np.isfinite(g_in)])
        finite_out = float(finite.max()) if finite.size else None
    return Origin(step=step, pass_=pass_, layer_norm=call["name"], time_step=call["row"],
                  op="batchnorm gradient (x * rsqrt(var + eps) * gamma)" if pass_ == "backward" else "batchnorm",
                  variance=float(variance.min()), zero_variance_examples=int((variance == 0).sum()),
                  epsilon=cell.epsilon, factor=float(gamma / math.sqrt(variance.min() + cell.epsilon)),
                  gradient_in=float(np.abs(g_out).max()) if g_out is not None else 0.0, gradient_out=finite_out)


def diagnosis(config, dataset, run, origin, fix_rows):
    """The ``rnn_core.diagnosis/1`` document: where it went non-finite and what each remedy did."""
    return {"schema": "rnn_core.diagnosis/1", "config": config.name, "dataset": dataset.name, "seed": run.seed,
            "epochs_searched": len(run.epochs), "nonfinite": run.nonfinite,
            "origin": origin.to_dict() if origin else None, "fixes": fix_rows}


def diagnosis_markdown(doc):
    lines = [f"# rnn-core diagnose: {doc['config']} on {doc['dataset']} (seed {doc['seed']})", ""]
    origin = doc["origin"]
    if doc["nonfinite"] is None:
        lines.append(f"No non-finite loss or gradient in {doc['epochs_searched']} epochs.")
    elif origin is None:
        lines.append(f"Non-finite {doc['nonfinite']['where']} at step {doc['nonfinite']['step']}, "
                     "not inside a layer norm (this cell has none, or the loss itself overflowed).")
    else:
        lines += [f"Origin: step {origin['step']}, {origin['pass']} pass, the '{origin['layer_norm']}' layer norm at "
                  f"row {origin['time_step']}.",
                  f"Why: {origin['zero_variance_examples']} examples give it a constant input (variance "
                  f"{origin['variance']:.3g}); with epsilon {origin['epsilon']:g} it scales gradients by up to "
                  f"{origin['factor']:.3g}; the gradient reaching it peaks at {origin['gradient_in']:.3g} and leaves "
                  "as inf/NaN."]
    if doc["fixes"]:
        lines += ["", "| remedy | changes | seeds | non-finite runs | first non-finite step | test accuracy |",
                  "|---|---|---|---|---|---|"]
        for row in doc["fixes"]:
            accuracy = "-" if row["test_accuracy"] is None else f"{row['test_accuracy']:.3f}"
            step = "-" if row["first_nonfinite_step"] is None else str(row["first_nonfinite_step"])
            lines.append(f"| {row['remedy']} | {row['changes'] or '(ln_lstm as is)'} | {row['seeds']} | "
                         f"{row['nonfinite_runs']}/{len(row['seeds'])} | {step} | {accuracy} |")
    return "\n".join(lines) + "\n"
