"""The tutorial's six configurations and its published results.

Defaults are the tutorial's: 28 rows of 28 pixels, 31 hidden units, batch 128, Adam 1e-3,
10 epochs. No TensorFlow here, so configurations are checked before TensorFlow is imported.
"""
import dataclasses
from dataclasses import dataclass, field

from rnn_core import errors


@dataclass(frozen=True)
class Config:
    name: str
    cell: str
    cell_args: dict = field(default_factory=dict)
    num_units: int = 31
    batch_size: int = 128
    lr: float = 1e-3
    clip_norm: float | None = None
    epochs: int = 10

    def __post_init__(self):
        errors.positive_int("num_units", self.num_units)
        errors.positive_int("batch_size", self.batch_size)
        errors.positive_int("epochs", self.epochs)
        errors.positive_float("lr", self.lr)
        if self.clip_norm is not None:
            errors.positive_float("clip_norm", self.clip_norm)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def hparams(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}


CONFIGS = {c.name: c for c in [
    Config("vanilla", "basic_rnn"),
    Config("lstm", "basic_lstm", {"forget_bias": 1.0}),
    Config("gru", "gru"),
    Config("lstm_fb5", "basic_lstm", {"forget_bias": 5.0}),
    Config("ln_lstm", "layer_norm_lstm"),
    Config("ln_lstm_fixed", "layer_norm_lstm", {"norm_gain": 0.85, "norm_shift": 0.15},
           lr=1e-4, clip_norm=5.0),
]}

# What the tutorial printed after epoch 10 on full MNIST (the brief's table). Its "test accu" is the
# minimum accuracy over the 78 test batches, not the mean.
PUBLISHED = {
    "vanilla": {"test": 1, "cell": "BasicRNNCell", "train_loss": 0.384, "test_min_batch_accuracy": 0.727,
                "sec_per_iter": 0.008,
                "curve": [.47, .54, .65, .66, .67, .68, .66, .71, .71, .73]},
    "lstm": {"test": 2, "cell": "BasicLSTMCell", "train_loss": 0.107, "test_min_batch_accuracy": 0.906,
             "sec_per_iter": 0.013,
             "curve": [.70, .80, .85, .87, .87, .88, .87, .87, .91, .91]},
    "gru": {"test": 3, "cell": "GRUCell", "train_loss": 0.106, "test_min_batch_accuracy": 0.906,
            "sec_per_iter": 0.014,
            "curve": [.68, .82, .86, .88, .89, .88, .89, .91, .91, .91]},
    "lstm_fb5": {"test": 4, "cell": "BasicLSTMCell(forget_bias=5.0)", "train_loss": 0.136,
                 "test_min_batch_accuracy": 0.898, "sec_per_iter": 0.014,
                 "curve": [.62, .70, .80, .82, .84, .86, .85, .87, .88, .90]},
    "ln_lstm": {"test": 5, "cell": "LayerNormBasicLSTMCell", "train_loss": float("nan"),
                "test_min_batch_accuracy": 0.055, "sec_per_iter": 0.063, "curve": None},
    "ln_lstm_fixed": {"test": 6, "cell": "LayerNormBasicLSTMCell(0.85, 0.15), lr 1e-4, clip 5",
                      "train_loss": 0.379, "test_min_batch_accuracy": 0.805, "sec_per_iter": 0.085,
                      "curve": [.42, .52, .60, .67, .69, .73, .74, .76, .79, .80]},
}


def get(name):
    return CONFIGS[errors.choice("config", name, list(CONFIGS))]


def parse_names(text):
    """'lstm,gru' -> [Config, Config]; every name checked before anything trains."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    errors.require(names, "configs", "a comma-separated list of " + ", ".join(CONFIGS), text)
    return [get(n) for n in names]
