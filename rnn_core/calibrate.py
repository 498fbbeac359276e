"""The calibration table every test bound comes from, and the one rule that turns it into bounds.

``rnn-core calibrate`` trains each configuration on N seeds at each tier's budget and writes
``rnn_core/calibration/calibration.json`` and ``.md``. Runs are deterministic and an epoch's
result never depends on how many epochs follow, so one run per (configuration, seed, dataset)
at the longest budget gives every shorter tier's numbers exactly.

Margin rule (the only one): a lower bound is ``min - 2 * sd_below`` over the calibrated seeds, an
upper bound ``max + 2 * sd_above``: a new seed must fall two standard deviations outside everything
calibration saw before a test fails. Each side's sd is measured on that side of the mean (its squared
deviations, doubled, as if mirrored): a seed far on a claim's good side (vanilla stuck at 0.61 makes
"lstm beats vanilla" by 0.29) says nothing about how far a new seed may fall on the other, yet it
doubles a plain sd. On a symmetric spread both equal the plain sd. A claim whose bound would not
support it is not asserted; its two-sided band [lower, upper] still is.
"""
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnn_core import configs

HERE = Path(__file__).parent / "calibration"
TABLE = HERE / "calibration.json"
SCHEMA = "rnn_core.calibration/1"
# Finished runs, kept so that an interrupted calibration resumes (relative: the working directory's).
STORE = Path(".rnn-core-runs")
MARGIN_SD = 2.0
MARGIN_RULE = f"min - {MARGIN_SD:g} sd_below, max + {MARGIN_SD:g} sd_above"
METRICS = ("test_accuracy", "test_min_batch_accuracy", "train_loss")
LEARNING = ("vanilla", "lstm", "gru", "lstm_fb5", "ln_lstm_fixed")
GATED = ("lstm", "gru", "lstm_fb5")
# Differences in test accuracy, (a, b, epoch): a - b after that epoch (None: at the tier's budget).
# "gated beats vanilla" is asserted in every tier; a curve fact only where calibration gives it a
# sign on every seed with margin (lower > 0 or upper < 0).
CLAIMS = {f"{gated}_minus_vanilla": (gated, "vanilla", None) for gated in GATED}
CURVE_FACTS = {"lstm_fb5_minus_lstm_epoch1": ("lstm_fb5", "lstm", 1), "lstm_fb5_minus_lstm": ("lstm_fb5", "lstm", None)}


@dataclass(frozen=True)
class Tier:
    dataset: str
    epochs: int
    epochs_for: tuple = ()  # (config, epochs) pairs that differ from the tier's epochs

    def budget(self, config):
        return dict(self.epochs_for).get(config, 1 if config == "ln_lstm" else self.epochs)


# quick: 20 epochs of mnist-5k (620 steps) is the shortest budget at which calibration supports
# "gated beats vanilla" for all three gated cells; ln_lstm_fixed (lr 1e-4) only has to show it
# learns, which 6 epochs do at a third of the cost. ln_lstm stops at step 0 in every tier.
TIERS = {
    "quick": Tier("mnist-5k", 20, (("ln_lstm_fixed", 6),)),
    "default": Tier("mnist-5k", 30),
    "slow": Tier("fashion-mnist", 10),
}


def stats(values):
    values = [v for v in values if v is not None]
    n, mean = len(values), statistics.fmean(values)

    def side_sd(side):
        return math.sqrt(2 * sum(min(0.0, side * (v - mean)) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0

    below, above = side_sd(1), side_sd(-1)
    return {"values": values, "mean": mean, "sd": statistics.stdev(values) if n > 1 else 0.0, "sd_below": below,
            "sd_above": above, "min": min(values), "max": max(values), "n": n,
            "lower": min(values) - MARGIN_SD * below, "upper": max(values) + MARGIN_SD * above}


def _fit_seeds(config, dataset_name, data_dir, seeds, store=STORE):
    """(runs, how many came from store): each seed's run, trained unless store already holds it.

    A run is keyed by everything measured to change it: configuration, dataset contents, seed,
    installed versions, rnn_core's source, and the processor and GPUs (XLA's float32 rounding differs
    between an Intel and an AMD CPU, tests/reference.py). Each is written as soon as it finishes, so a
    calibration that dies (a worker's segfault, a session's end) loses at most the runs in flight."""
    from rnn_core import data, report, train  # here, not above: the CLI checks tier names before TensorFlow loads
    from rnn_core.compat import versions
    dataset = data.load(dataset_name, data_dir)
    store = Path(store)
    arrays = (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y)
    key = hashlib.sha256(repr((dataclasses.asdict(config), versions(), sys.version, report.processor(),
                               report.gpu_names(), [(a.dtype.str, a.shape) for a in arrays])).encode())
    for array in arrays:
        key.update(array.tobytes())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        key.update(source.read_bytes())
    runs, stored = [], 0
    for seed in seeds:
        seed_key = key.copy()
        seed_key.update(str(seed).encode())
        path = store / f"{dataset.name}-{config.name}-seed{seed}-{seed_key.hexdigest()[:16]}.json"
        if path.exists():
            runs.append(train.Run(**json.loads(path.read_text())))
            stored += 1
            continue
        runs.append(train.fit(config, dataset, seed, log=None))
        store.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a reader never sees half a file, even with two calibrations at once.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(dataclasses.asdict(runs[-1])))  # NaN stays NaN: this file is Python's alone
        partial.replace(path)
    return runs, stored


def fit_seeds(jobs, data_dir=None, workers=2, log=print, store=STORE):
    """{key: [Run per seed]} for jobs {key: (config, dataset name, seeds)}, each job in a process of its own,
    each finished run kept in store (see _fit_seeds).

    A process never frees an XLA program it compiled: a few hundred trainings in one process run the
    machine out of LLVM's code mappings ("LLVM compilation error: Cannot allocate memory", then a
    segfault). Two workers also use both cores (each trainer runs one intra-op thread)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {pool.submit(_fit_seeds, config, name, data_dir, list(seeds), store): key
                   for key, (config, name, seeds) in jobs.items()}
        done = {}
        for future in as_completed(futures):
            key, (runs, stored) = futures[future], future.result()
            done[key] = runs
            log(f"{runs[0].dataset['name']} {runs[0].config}: test accuracy "
                f"{[r.final['test_accuracy'] for r in runs]}, non-finite at {[r.nonfinite and r.nonfinite['step'] for r in runs]}"
                f"{f' ({stored} of {len(runs)} runs from {store})' if stored else ''}")
        return done


def calibrate(tiers, seeds, data_dir=None, log=print, store=STORE):
    """{tier: {config: {metric: stats}, "gated_minus_vanilla": ..., "curves": ...}} over seeds."""
    from rnn_core.compat import KERAS_MAJOR, versions
    by_dataset = {}
    for name in tiers:
        by_dataset.setdefault(TIERS[name].dataset, []).append(name)
    doc = {"schema": SCHEMA, "keras_major": KERAS_MAJOR, "versions": versions(), "margin_sd": MARGIN_SD, "tiers": {}}
    for dataset_name, tier_names in by_dataset.items():
        jobs = {config: (configs.get(config).replace(epochs=max(TIERS[t].budget(config) for t in tier_names)),
                         dataset_name, seeds) for config in (*LEARNING, "ln_lstm")}
        runs = {(config, run.seed): run for config, config_runs in fit_seeds(jobs, data_dir, log=log, store=store).items()
                for run in config_runs}
        for tier in tier_names:
            doc["tiers"][tier] = summarize(runs, seeds, TIERS[tier])
    return doc


def summarize(runs, seeds, tier):
    section = {"dataset": tier.dataset, "epochs": tier.epochs, "seeds": list(seeds), "configs": {}, "claims": {}}
    for config in LEARNING:
        budget = tier.budget(config)
        epochs = [runs[config, s].epochs[budget - 1] for s in seeds]
        section["configs"][config] = {
            **{m: stats([e[m] for e in epochs]) for m in METRICS},
            "epochs": budget, "steps": epochs[0]["step"],
            "nonfinite_runs": sum(runs[config, s].nonfinite is not None for s in seeds),
            "curve": [stats([runs[config, s].epochs[i]["test_accuracy"] for s in seeds])["mean"]
                      for i in range(budget)]}
    nan_steps = [runs["ln_lstm", s].nonfinite["step"] if runs["ln_lstm", s].nonfinite else None for s in seeds]
    section["configs"]["ln_lstm"] = {"nonfinite_step": {"values": nan_steps}}
    for claim, (a, b, epoch) in {**CLAIMS, **CURVE_FACTS}.items():
        section["claims"][claim] = stats([difference(runs[a, s], runs[b, s], tier, epoch) for s in seeds])
    return section


def difference(run_a, run_b, tier, epoch=None):
    """Test accuracy of run_a minus run_b after epoch (default: the tier's shared budget)."""
    budget = tier.budget(run_a.config)
    assert budget == tier.budget(run_b.config), "compared configurations must share a step budget"
    at = (epoch or budget) - 1
    return run_a.epochs[at]["test_accuracy"] - run_b.epochs[at]["test_accuracy"]


FIX_EPOCHS = 10
EXPLODING_EPOCHS = 5


def fixes(dataset, seeds, data_dir=None, epochs=FIX_EPOCHS, log=print, store=STORE):
    """The NaN's fix table on dataset: each remedy's first-step outcome and its run over epochs, per seed."""
    from rnn_core import numerics
    jobs = {("fix", name): (numerics.remedy(name).replace(epochs=epochs), dataset.name, seeds)
            for name in numerics.REMEDIES}
    jobs.update({("exploding", name): (numerics.exploding(name).replace(epochs=EXPLODING_EPOCHS), dataset.name, seeds)
                 for name in numerics.EXPLODING_REMEDIES})
    runs = fit_seeds(jobs, data_dir, log=log, store=store)
    rows = []
    for name in numerics.REMEDIES:
        row = numerics.fix_row(name, runs["fix", name], dataset, epochs)
        row["first_step_finite"] = [numerics.first_step_finite(numerics.remedy(name), dataset, s) for s in seeds]
        accuracies = row.pop("accuracies")
        if row["test_accuracy"] is not None:
            row["test_accuracy_stats"] = stats(accuracies)
        rows.append(row)
    origins = [numerics.diagnose(configs.get("ln_lstm"), dataset, s)[1].to_dict() for s in seeds]
    exploding = {}
    for name in numerics.EXPLODING_REMEDIES:
        peaks = [numerics.peak_loss(r) for r in runs["exploding", name]]
        exploding[name] = {"peak_loss": peaks, "diverged": [p > numerics.DIVERGED_LOSS for p in peaks],
                           "max_grad_norm": stats([float(np.nanmax(r.steps["grad_norm"])) for r in runs["exploding", name]])}
    return {"dataset": dataset.name, "epochs": epochs, "seeds": list(seeds), "remedies": rows, "origins": origins,
            "exploding": {"config": numerics.EXPLODING.name, "epochs": EXPLODING_EPOCHS,
                          "diverged_loss": numerics.DIVERGED_LOSS, "remedies": exploding}}


def validate(seeds, marker="quick", log=print):
    """Run ``pytest -m marker --rnn-seed S`` for each seed (from the repository root): the bounds must
    hold for seeds calibration never saw. Returns {seed: pytest's summary line}."""
    import subprocess
    import sys
    results = {}
    for seed in seeds:
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", marker, "-q", "-p", "no:cacheprovider",
                               f"--rnn-seed={seed}"], capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        results[str(seed)] = {"exit": done.returncode, "summary": lines[-1] if lines else done.stderr[-200:],
                              "failed": [line.split(" - ")[0].removeprefix("FAILED ") for line in lines
                                         if line.startswith("FAILED ")]}
        log(f"validate {marker} seed {seed}: {results[str(seed)]}")
    return {"marker": marker, "seeds": results}


def has_sign(claim):
    """Whether the calibrated bounds of a difference exclude 0 (lower > 0 or upper < 0)."""
    return claim["lower"] > 0 or claim["upper"] < 0


def sign(claim):
    """How a difference is asserted: '>= lower', '<= upper', or only within its band when its sign is not certain."""
    if claim["lower"] > 0:
        return f">= {claim['lower']:.3f}"
    if claim["upper"] < 0:
        return f"<= {claim['upper']:.3f}"
    return f"no sign: in [{claim['lower']:.3f}, {claim['upper']:.3f}]"


def seed_range(seeds):
    """[0, 1, 2, 3] -> '0-3'; anything not a contiguous range as a list."""
    contiguous = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ", ".join(map(str, seeds))


def load(path=TABLE):
    return json.loads(Path(path).read_text())


def write(doc, path=TABLE):
    """Merge doc's tiers and fixes into the table at path (other Keras majors, tiers and datasets kept)."""
    path = Path(path)
    table = load(path) if path.exists() else {"schema": SCHEMA, "keras": {}}
    key = f"keras{doc['keras_major']}"
    entry = table["keras"].setdefault(key, {"tiers": {}, "fixes": {}})
    entry.update({k: doc[k] for k in ("versions", "margin_sd")})
    entry["tiers"].update(doc.get("tiers", {}))
    entry.setdefault("fixes", {}).update(doc.get("fixes", {}))
    if "validation" in doc:
        entry.setdefault("validations", []).append(
            {**doc["validation"], "calibrated_seeds": entry["tiers"]["quick"]["seeds"], "margin_rule": MARGIN_RULE})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(table))
    return table


def markdown(table):
    lines = ["# Calibration", "",
             "Regenerate (Keras 3): `rnn-core calibrate --tiers quick,default --seeds 0-19`, `rnn-core calibrate "
             "--tiers none --fixes --seeds 0-9`, `rnn-core calibrate --tiers slow --seeds 0-4`, then `rnn-core "
             "calibrate --validate 20-24`; (Keras 2, TF 2.15): the same but the slow tier, each as `.tox/tf215/bin/python "
             "-m rnn_core calibrate ...` from the repository root after `tox -e tf215 --notest`. Each Keras major has its own section: seeded values differ between "
             f"them. Margin rule: lower bound = min - {MARGIN_SD:g} sd_below, upper bound = max + {MARGIN_SD:g} "
             "sd_above (each side's sd measured on its side of the mean), over each section's seeds; validation runs "
             "the quick tier on seeds calibration never saw.", ""]
    for key, entry in sorted(table["keras"].items()):
        v = entry["versions"]
        lines += [f"## {key}: TensorFlow {v['tensorflow']}, Keras {v['keras']}, NumPy {v['numpy']}", ""]
        for validation in entry.get("validations", []):
            lines += [f"Validation, `pytest -m {validation['marker']} --rnn-seed S` on seeds calibration never saw, "
                      f"against the quick tier calibrated on seeds {seed_range(validation['calibrated_seeds'])} with "
                      f"bounds {validation['margin_rule']}:", "", "| seed | exit | pytest | failed |", "|---|---|---|---|"]
            lines += [f"| {seed} | {r['exit']} | {r['summary']} | {', '.join(r['failed']) or '-'} |"
                      for seed, r in validation["seeds"].items()]
            lines.append("")
        for tier, section in entry["tiers"].items():
            lines += [f"### {tier}: {section['dataset']}, {section['epochs']} epochs, seeds {seed_range(section['seeds'])}",
                      "",
                      "| config | metric | mean | sd (below/above) | min | max | bound |", "|---|---|---|---|---|---|---|"]
            for config, metrics in section["configs"].items():
                if config == "ln_lstm":
                    lines.append(f"| ln_lstm | first non-finite step | {metrics['nonfinite_step']['values']} "
                                 "| | | | |")
                    continue
                for metric in METRICS:
                    s = metrics[metric]
                    bound = f"<= {s['upper']:.3f}" if metric == "train_loss" else f">= {s['lower']:.3f}"
                    lines.append(f"| {config} | {metric} | {s['mean']:.3f} | {_sd(s)} | {s['min']:.3f} "
                                 f"| {s['max']:.3f} | {bound} |")
            for claim, s in section["claims"].items():
                lines.append(f"| claim | {claim} | {s['mean']:.3f} | {_sd(s)} | {s['min']:.3f} | {s['max']:.3f} "
                             f"| {sign(s)} |")
            lines.append("")
        for dataset, table_ in entry.get("fixes", {}).items():
            lines += fix_table_markdown(table_)
    return "\n".join(lines) + "\n"


def _sd(s):
    return f"{s['sd']:.3f} ({s['sd_below']:.3f}/{s['sd_above']:.3f})"


def fix_table_markdown(table):
    """The NaN's fix matrix and the exploding-gradient runs as markdown lines."""
    lines = [f"### The NaN's fix matrix: ln_lstm on {table['dataset']}, seeds {seed_range(table['seeds'])}, "
             f"{table['epochs']} epochs", "",
             "| remedy | changes | first gradient finite | non-finite runs | non-finite at step | test accuracy |",
             "|---|---|---|---|---|---|"]
    for row in table["remedies"]:
        steps = "-" if row["first_nonfinite_step"] is None else \
            f"{row['first_nonfinite_step']}-{row['last_nonfinite_step']}"
        accuracy = "-" if row["test_accuracy"] is None else \
            f"{row['test_accuracy']:.3f} (>= {row['test_accuracy_stats']['lower']:.3f})"
        finite = sum(row["first_step_finite"])
        lines.append(f"| {row['remedy']} | {row['changes'] or '-'} | {finite}/{len(row['seeds'])} | "
                     f"{row['nonfinite_runs']}/{len(row['seeds'])} | {steps} | {accuracy} |")
    origins = {(o["layer_norm"], o["time_step"]) for o in table["origins"]}
    lines += ["", f"Origin on every seed: step {sorted({o['step'] for o in table['origins']})}, backward pass; "
              f"(layer norm, row): {sorted(origins)}; factor {table['origins'][0]['factor']:.3g}.", ""]
    exploding = table["exploding"]
    lines += [f"### Exploding gradients: {exploding['config']}, {exploding['epochs']} epochs "
              f"(diverged: a step loss above {exploding['diverged_loss']:.1f})", "",
              "| remedy | diverged runs | peak loss per seed | peak gradient norm (min-max) |",
              "|---|---|---|---|"]
    for name, r in exploding["remedies"].items():
        lines.append(f"| {name} | {sum(r['diverged'])}/{len(r['diverged'])} | "
                     f"{', '.join(f'{p:.3g}' for p in r['peak_loss'])} | "
                     f"{r['max_grad_norm']['min']:.3g}-{r['max_grad_norm']['max']:.3g} |")
    return lines + [""]
