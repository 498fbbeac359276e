"""results.json (schema ``rnn_core.results/1``), results.md and curves.png for a set of runs.

Written after every run, so an interrupted or failed compare keeps what finished.
"""
import json
import os
import platform
import statistics
from pathlib import Path

from rnn_core import errors
from rnn_core.configs import CONFIGS, PUBLISHED

SCHEMA = "rnn_core.results/1"


def environment():
    from rnn_core.compat import tf, versions
    gpus = tf.config.list_physical_devices("GPU")
    return {**versions(), "python": platform.python_version(), "device": "GPU" if gpus else "CPU",
            "processor": processor(), "threads": os.cpu_count()}


def results(runs, dataset):
    return {"schema": SCHEMA, "dataset": dataset, "environment": environment(), "runs": [r.to_dict() for r in runs]}


def write(runs, dataset, out_dir):
    """results.json, results.md and curves.png under out_dir; returns the results dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = results(runs, dataset)
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "results.md").write_text(markdown(doc))
    plot(doc, out / "curves.png")
    return doc


def sec_per_iter(run):
    """Median over epochs: epoch 1 shares its wall time with the first calls' one-off costs."""
    values = [e["sec_per_iter"] for e in run["epochs"] if e["sec_per_iter"] is not None]
    return statistics.median(values) if values else None


def markdown(doc):
    d = doc["dataset"]
    lines = [f"# rnn_core compare: {d['name']} ({d['train']} train / {d['test']} test images)", "",
             _environment_line(doc["environment"]), "",
             "Tutorial: its row after epoch 10 on full MNIST (55,000 images, 4,290 steps); its accu is the minimum "
             "test-batch accuracy.", "",
             "| config | epochs | steps | train loss | test accuracy | test min-batch | ms/iter | non-finite "
             "| tutorial loss | tutorial min-batch | tutorial ms/iter |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in doc["runs"]:
        published = PUBLISHED.get(run["config"], {})
        final, last = run["final"], run["epochs"][-1] if run["epochs"] else {}
        nonfinite = run["nonfinite"]
        lines.append("| " + " | ".join([
            run["config"], str(len(run["epochs"])), str(last.get("step", 0)), _num(final["train_loss"]),
            _num(final["test_accuracy"]), _num(final["test_min_batch_accuracy"]), _num(sec_per_iter(run), 1e3, 2),
            f"step {nonfinite['step']} ({nonfinite['where']})" if nonfinite else "no",
            _num(published.get("train_loss")), _num(published.get("test_min_batch_accuracy")),
            _num(published.get("sec_per_iter"), 1e3, 0)]) + " |")
    return "\n".join(lines) + "\n"


def plot(doc, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, run in enumerate(doc["runs"]):
        color = f"C{i}"
        epochs = [e["epoch"] for e in run["epochs"]]
        ax.plot(epochs, [e["test_accuracy"] for e in run["epochs"]], "o-", color=color, ms=3, label=run["config"])
        curve = PUBLISHED.get(run["config"], {}).get("curve")
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, ":", color=color, alpha=0.6)
    ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1),
           title=f"{doc['dataset']['name']}: test accuracy (dotted: the tutorial's min-batch, full MNIST)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _environment_line(env):
    return (f"TensorFlow {env['tensorflow']}, Keras {env['keras']}, NumPy {env['numpy']}, Python {env['python']}; "
            f"{env['device']} ({env['processor']}, {env['threads']} threads)")


def _num(value, scale=1.0, digits=3):
    return "-" if value is None or value != value else f"{value * scale:.{digits}f}"


def processor():
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names():
    """The GPUs' model names as nvidia-smi reports them, without importing TensorFlow; [] if none."""
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return []
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def cross_version(paths):
    """Merge per-environment results.json files (and pytest-benchmark JSON files) into one table.

    Rows are configurations, columns environments (TensorFlow and Keras versions). A cell holds the
    run's test accuracy and its ms/iter: the pytest-benchmark median of the default train step when a
    benchmark file for that environment is given, else the trainer's own median sec/iter. With the
    benchmark comes the step's ratio to its matmul floor, timed in the same session. Neither compares
    across columns when the environments shared the machine (tox -p): time them one at a time.
    """
    columns, cells, floors = [], {}, {}
    for path in paths:
        doc = _read_json(path)
        if doc.get("schema") == SCHEMA:
            env = doc["environment"]
            column = f"TF {env['tensorflow']} / Keras {env['keras']}"
            columns.append(column) if column not in columns else None
            for run in doc["runs"]:
                cell = cells.setdefault(run["config"], {}).setdefault(column, {})
                cell.update({"test_accuracy": run["final"]["test_accuracy"], "steps": run["epochs"][-1]["step"]
                             if run["epochs"] else 0, "nonfinite": run["nonfinite"] is not None,
                             "ms_per_iter": _scaled(sec_per_iter(run))})
        elif "benchmarks" in doc:
            info = doc["machine_info"]
            column = f"TF {info.get('tensorflow')} / Keras {info.get('keras')}"
            columns.append(column) if column not in columns else None
            for bench in doc["benchmarks"]:
                params = bench.get("params") or {}
                if params.get("step") != "train" or params.get("device") != "/CPU:0":
                    continue
                if bench["name"].startswith("test_step") and params.get("implementation") == "cell_xla":
                    cells.setdefault(params["name"], {}).setdefault(column, {})["benchmark_ms"] = \
                        bench["stats"]["median"] * 1e3
                elif bench["name"].startswith("test_matmul_floor"):
                    floors[column, params["cell"]] = bench["stats"]["median"] * 1e3
        else:
            raise errors.DataError(f"{path}: neither a {SCHEMA} file nor a pytest-benchmark JSON file")
    for config, row in cells.items():  # a benchmark's median wins over the trainer's, whatever the file order
        for column, cell in row.items():
            if "benchmark_ms" not in cell:
                continue
            cell["ms_per_iter"] = cell.pop("benchmark_ms")
            floor = floors.get((column, CONFIGS[config].cell)) if config in CONFIGS else None
            if floor:
                cell["times_floor"] = cell["ms_per_iter"] / floor
    return {"schema": "rnn_core.crossversion/1", "columns": columns, "rows": cells}


def _read_json(path):
    try:
        doc = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise errors.DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise errors.DataError(f"{path}: a JSON {type(doc).__name__}, not a results or benchmark object")
    return doc


def cross_version_markdown(table):
    columns = table["columns"]
    lines = ["| config | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for config, row in table["rows"].items():
        entries = []
        for column in columns:
            cell = row.get(column, {})
            accuracy = "NaN" if cell.get("nonfinite") else _num(cell.get("test_accuracy"))
            ratio = f" ({cell['times_floor']:.2f}x floor)" if "times_floor" in cell else ""
            entries.append(f"{accuracy} @ {cell.get('steps', '-')} steps, {_num(cell.get('ms_per_iter'), 1, 2)} ms{ratio}")
        lines.append(f"| {config} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def _scaled(seconds):
    return None if seconds is None else seconds * 1e3
