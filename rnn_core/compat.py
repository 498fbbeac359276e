"""The one place that knows which Keras line is installed.

TF < 2.16 bundles Keras 2 as ``tf.keras``; TF >= 2.16 uses Keras 3 (``import keras``) unless
``TF_USE_LEGACY_KERAS=1`` selects tf-keras, which ``tf.keras`` then returns. Importing
``keras`` directly on TF 2.15 could give a mismatched standalone package, so nobody else does.
"""
import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ info lines would bury the tutorial's log lines
import tensorflow as tf  # noqa: E402

TF_VERSION = tuple(int(p) for p in tf.__version__.split(".")[:2])

if TF_VERSION < (2, 16) or os.environ.get("TF_USE_LEGACY_KERAS") in ("1", "true", "True"):
    keras = tf.keras
else:
    import keras


def _keras_version():
    """keras.__version__, or, for an API module that has none (TF 2.15's tf.keras is
    ``keras.api._v2.keras``), the version of the package that provides it."""
    version = getattr(keras, "__version__", None)
    if version is None:
        version = importlib.import_module(keras.__name__.split(".")[0]).__version__
    return version


KERAS_VERSION = _keras_version()
KERAS_MAJOR = int(KERAS_VERSION.split(".")[0])

# One thread per op: at the tutorial's sizes (batch 128, 31 units) splitting a matmul across
# threads costs more than it saves: XLA's train step ran 1.07-1.21x faster than with two threads on
# two cores (README, Performance), and a second process can use the other core.
# Only possible before TensorFlow runs its first op; RNN_CORE_INTRA_OP_THREADS=0 keeps TF's default.
try:
    tf.config.threading.set_intra_op_parallelism_threads(int(os.environ.get("RNN_CORE_INTRA_OP_THREADS", "1")))
except RuntimeError:
    pass


def variable_name(variable):
    """'mnist_rnn/rnn/cell/kernel' on both lines (Keras 3 .path, Keras 2 .name without ':0')."""
    return getattr(variable, "path", None) or variable.name.split(":")[0]


def versions():
    import numpy
    return {"tensorflow": tf.__version__, "keras": KERAS_VERSION, "numpy": numpy.__version__}
