"""``rnn-core``: compare (the tutorial's results table), diagnose (the NaN), calibrate (test bounds).

Arguments are checked before TensorFlow is imported; a bad one prints one line and exits 2.
"""
import argparse
import sys

from rnn_core import calibrate as calibration
from rnn_core import configs, data, errors

DEFAULT_EPOCHS = {"mnist-5k": 30}  # 31 steps an epoch there; 30 epochs is where the gated cells level off


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except errors.UsageError as e:
        parser.exit(2, f"rnn-core: error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, "rnn-core: interrupted; results so far are in --out\n")


def compare(args):
    chosen = configs.parse_names(args.configs)
    dataset = data.load(args.dataset, args.data_dir)
    epochs = args.epochs or DEFAULT_EPOCHS.get(args.dataset, 10)
    from rnn_core import report, train
    logdir = args.logdir or f"{args.out}/tensorboard"
    runs = []
    for config in chosen:
        print(f"== {config.name}: {config.cell} {config.cell_args or ''} lr {config.lr} clip {config.clip_norm}, "
              f"{epochs} epochs on {dataset.name}", flush=True)
        run = train.fit(config.replace(epochs=epochs), dataset, args.seed, logdir=logdir,
                        log=lambda line: print(line, flush=True), log_every=args.log_every,
                        progress=_progress, stop_on_nonfinite=not args.keep_going)
        runs.append(run)
        report.write(runs, dataset.summary(), args.out)
    print(open(f"{args.out}/results.md").read())
    print(f"wrote {args.out}/results.json, results.md, curves.png; TensorBoard: tensorboard --logdir {logdir}")
    return 0


def diagnose(args):
    config = configs.get(args.config)
    layer_norm = [name for name, c in configs.CONFIGS.items() if c.cell == "layer_norm_lstm"]
    if not args.no_fixes:
        errors.choice("config (the fix table's remedies change a layer norm; else --no-fixes)", args.config, layer_norm)
    dataset = data.load(args.dataset, args.data_dir)
    from rnn_core import numerics
    run, origin = numerics.diagnose(config, dataset, args.seed, epochs=args.epochs)
    rows = [] if args.no_fixes else numerics.fix_matrix(dataset, args.seeds, args.epochs, base=args.config)
    doc = numerics.diagnosis(config, dataset, run, origin, rows)
    _emit(doc, numerics.diagnosis_markdown(doc), args.out, "diagnosis")
    return 0


def calibrate(args):
    for tier in args.tiers:
        errors.choice("tier", tier, list(calibration.TIERS))
    if args.validate:
        from rnn_core.compat import KERAS_MAJOR, versions
        doc = {"keras_major": KERAS_MAJOR, "versions": versions(), "margin_sd": calibration.MARGIN_SD,
               "validation": calibration.validate(args.validate)}
    else:
        doc = calibration.calibrate(args.tiers, args.seeds, args.data_dir, store=args.store)
    if args.fixes:
        dataset = data.load(calibration.TIERS["quick"].dataset, args.data_dir)
        doc["fixes"] = {dataset.name: calibration.fixes(dataset, args.seeds, args.data_dir, store=args.store)}
    table = args.table or calibration.TABLE
    calibration.write(doc, table)
    print(f"wrote {table} and {table.with_suffix('.md')}")
    return 0


def table(args):
    from pathlib import Path
    for path in args.results:
        errors.require(Path(path).is_file(), "results", "existing results.json or benchmark JSON files", path)
    from rnn_core import report
    merged = report.cross_version(args.results)
    _emit(merged, report.cross_version_markdown(merged), args.out, "crossversion")
    return 0


def _emit(doc, text, out, stem):
    """Print the markdown; with out, also write out/stem.json and out/stem.md."""
    print(text)
    if out:
        from pathlib import Path
        import json
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out / f"{stem}.md").write_text(text)
        print(f"wrote {out}/{stem}.json, {stem}.md")


def _seeds(text):
    """'0-4' or '0,3,7' -> [0, 1, 2, 3, 4] / [0, 3, 7]."""
    try:
        if "-" in text:
            low, high = (int(p) for p in text.split("-"))
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(p) for p in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be a range like 0-4 or a list like 0,3,7 of integers >= 0, "
                                         f"got {text!r}")
    return seeds


def _progress(name, epoch, epochs):
    width = 30
    done = width * epoch // epochs
    end = "\n" if epoch == epochs else ""
    print(f"\r{name:>14} [{'#' * done}{'.' * (width - done)}] {epoch}/{epochs} epochs", end=end, file=sys.stderr,
          flush=True)


def _type(check, name):
    """An argparse type that reports our one-line message (argparse then exits 2)."""
    def convert(text):
        try:
            return check(name, int(text) if text.lstrip("-").isdigit() else text)
        except errors.UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


class _Parser(argparse.ArgumentParser):
    """argparse without the usage block on errors: one line, exit 2; and without abbreviations, so a
    mistyped option is an error, never another option (calibrate --seed 3 is not --seeds 3)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    parser = _Parser(prog="rnn-core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", help="directory with IDX files or mnist.npz (default: $RNN_CORE_DATA_DIR)")
    common = argparse.ArgumentParser(add_help=False, parents=[data_dir])
    common.add_argument("--dataset", default="mnist-5k", choices=data.SOURCES)
    common.add_argument("--seed", type=_type(errors.non_negative_int, "seed"), default=0)

    p = sub.add_parser("compare", parents=[common], help="train the tutorial's configurations, write the results")
    p.add_argument("--configs", default=",".join(configs.CONFIGS), help="comma-separated, from: %(default)s")
    p.add_argument("--epochs", type=_type(errors.positive_int, "epochs"),
                   help="default: 10 (the tutorial's), 30 on mnist-5k")
    p.add_argument("--out", default="runs/compare", help="results directory (default: %(default)s)")
    p.add_argument("--logdir", help="TensorBoard directory (default: OUT/tensorboard)")
    p.add_argument("--log-every", type=_type(errors.positive_int, "log-every"), default=250,
                   help="steps between [trn] lines (default: the tutorial's 250)")
    p.add_argument("--keep-going", action="store_true", help="keep training after NaN/Inf, as the tutorial did")
    p.set_defaults(command=compare)

    p = sub.add_parser("diagnose", parents=[common], help="locate where a run goes non-finite; the fix table")
    p.add_argument("--config", default="ln_lstm", choices=list(configs.CONFIGS))
    p.add_argument("--epochs", type=_type(errors.positive_int, "epochs"), default=5,
                   help="budget to find the NaN and to train each remedy (default: %(default)s)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="seeds for the fix table (default: 0-2)")
    p.add_argument("--no-fixes", action="store_true", help="only the origin, not the fix table")
    p.add_argument("--out", help="also write diagnosis.json and diagnosis.md here")
    p.set_defaults(command=diagnose)

    from pathlib import Path
    p = sub.add_parser("calibrate", parents=[data_dir], help="train every config on N seeds; write the bounds table")
    p.add_argument("--tiers", type=lambda t: [] if t == "none" else t.split(","), default=["quick", "default"],
                   help="comma-separated tiers: quick, default, slow, or none (default: quick,default)")
    p.add_argument("--seeds", type=_seeds, default=list(range(20)),
                   help="seeds (default: 0-19, as the mnist-5k tiers are calibrated; the fix matrix used 0-9)")
    p.add_argument("--fixes", action="store_true", help="also the NaN fix matrix and the exploding-gradient runs")
    p.add_argument("--table", type=Path, default=None, help="output JSON (default: the package's calibration.json)")
    p.add_argument("--store", type=Path, default=calibration.STORE,
                   help="each finished run is kept here, so an interrupted calibration resumes where it stopped "
                        "(default: %(default)s)")
    p.add_argument("--validate", type=_seeds, metavar="SEEDS",
                   help="instead: run pytest -m quick --rnn-seed S for these seeds and record the outcomes")
    p.set_defaults(command=calibrate)

    p = sub.add_parser("table", help="merge per-environment results (tox) into a cross-version table")
    p.add_argument("results", nargs="+", help="results.json files (pytest --rnn-results) and benchmark JSON files")
    p.add_argument("--out", help="also write crossversion.json and crossversion.md here")
    p.set_defaults(command=table)
    return parser
