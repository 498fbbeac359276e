"""Markers, options and the session's trained runs.

Every test that needs a trained configuration asks ``trained(tier, config)``: each
(tier, configuration) trains once per session (once per worker under pytest-xdist) and is
shared. Seeds are pinned: 0 unless ``--rnn-seed`` says otherwise.
"""
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _xla_cache_flag():
    """XLA's persistent compile cache, one directory per TensorFlow version: a warm run of the quick
    tier skips most of its ~25 s of XLA compiles, and repeated configurations hit it within a run.
    Not on TF 2.15, whose XLA CPU then fails ("TargetRegistry::lookupTarget failed")."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        return None
    if tuple(int(p) for p in tf_version.split(".")[:2]) < (2, 16):
        return None
    cache = Path(os.environ.get("RNN_CORE_XLA_CACHE", Path.home() / ".cache" / "rnn_core" / "xla")) / tf_version
    cache.mkdir(parents=True, exist_ok=True)
    return f"--tf_xla_persistent_cache_directory={cache}"


if "TF_XLA_FLAGS" not in os.environ:
    os.environ["TF_XLA_FLAGS"] = _xla_cache_flag() or ""


def pytest_addoption(parser):
    group = parser.getgroup("rnn_core")
    group.addoption("--rnn-seed", type=int, default=0, help="seed of every trained run (default: 0, the pinned seed)")
    group.addoption("--rnn-dataset", default=None,
                    help="dataset for the learning claims instead of the tier's (mnist-5k, mnist, fashion-mnist)")
    group.addoption("--rnn-results", default=None,
                    help="write the session's trained runs to this results.json (tox collects one per env)")


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from rnn_core.compat import tf
    if not tf.config.list_physical_devices("GPU"):
        skip = pytest.mark.skip(reason="no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def seed(request):
    return request.config.getoption("--rnn-seed")


@pytest.fixture(scope="session")
def datasets():
    from rnn_core import data
    return data.load


@pytest.fixture(scope="session")
def tier_dataset(request):
    """The dataset a tier's learning claims use: the tier's own, or --rnn-dataset."""
    from rnn_core.calibrate import TIERS
    override = request.config.getoption("--rnn-dataset")
    return lambda tier: override or TIERS[tier].dataset


@pytest.fixture(scope="session")
def trained(request, seed, datasets, tier_dataset):
    """trained(tier, config) -> Run at the tier's budget; each trains once per session."""
    from rnn_core import configs, train
    from rnn_core.calibrate import TIERS
    cache = {}

    def get(tier, name):
        if (tier, name) not in cache:
            config = configs.get(name).replace(epochs=TIERS[tier].budget(name))
            cache[tier, name] = train.fit(config, datasets(tier_dataset(tier)), seed, log=None)
        return cache[tier, name]

    yield get
    path = request.config.getoption("--rnn-results")
    if path and cache:
        from rnn_core import report
        runs = list(cache.values())
        doc = report.results(runs, runs[0].dataset)
        doc["tiers"] = [tier for tier, _ in cache]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")
