"""Markers, options and the session's trained runs.

Every test that needs a trained configuration asks ``trained(tier, config)``: each
(tier, configuration) trains once per session (once per worker under pytest-xdist) and is
shared. Seeds are pinned: 0 unless ``--rnn-seed`` says otherwise.
"""
import json
import os
import re
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


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own pytest_configure opens its storage
def pytest_configure(config):
    """Benchmark storage per hardware: pytest-benchmark's machine id names the OS and Python, not the
    CPU or GPU, so without this a GPU run would be compared with a laptop's."""
    config.rnn_benchmark_floors, config.rnn_benchmark_rows = {}, []
    if getattr(config.option, "benchmark_storage", None) == "file://./.benchmarks":
        from rnn_core import report
        hardware = "_".join([report.processor(), *report.gpu_names()] or ["cpu"])
        config.option.benchmark_storage = f"file://./.benchmarks/{re.sub(r'[^A-Za-z0-9.]+', '-', hardware).strip('-')}"


def pytest_benchmark_update_machine_info(config, machine_info):
    from rnn_core import report
    from rnn_core.compat import versions
    machine_info.update(versions(), cpu_model=report.processor(), gpus=report.gpu_names())


def pytest_terminal_summary(terminalreporter, config):
    """Each timed step beside its matmul floor: the benchmarks' extra_info as one table."""
    rows = config.rnn_benchmark_rows
    if not rows:
        return
    write = terminalreporter.write_line
    write("")
    write("| step | config | implementation | device | median ms | floor ms | x floor |")
    write("|---|---|---|---|---|---|---|")
    for step, name, implementation, device, median, floor in rows:
        ratio = f"{median / floor:.2f}" if floor else "-"
        floor_ms = f"{floor * 1e3:.3f}" if floor else "-"
        write(f"| {step} | {name} | {implementation} | {device.strip('/').split(':')[0].lower()} | {median * 1e3:.3f} "
              f"| {floor_ms} | {ratio} |")


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
        path = Path(path)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:  # each xdist worker trains its own share: one file each, which rnn-core table merges
            path = path.with_name(f"{path.stem}.{worker}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
