"""Every configuration learns as calibrated, gated cells beat vanilla, differences between curves stay
in their calibrated bands, and a seed fixes the history.

Bounds come from rnn_core/calibration/calibration.json by its one margin rule (min - 2 sd_below,
max + 2 sd_above over the calibrated seeds); trained runs are the session's, one per (tier, configuration).
"""
import pytest

from rnn_core import calibrate, configs, train
from tiers import over, published_lower, section, signed


@pytest.mark.parametrize("tier, name", over(calibrate.LEARNING))
def test_reaches_accuracy(tier, name, trained, tier_dataset):
    """Test accuracy (mean and the tutorial's min-batch) reach their bounds and the loss falls below its own."""
    run = trained(tier, name)
    assert run.nonfinite is None, f"{name} went non-finite: {run.nonfinite}"
    final = run.final
    if tier == "slow" and tier_dataset(tier) == "mnist":
        # Full MNIST has no calibration here (it can't be downloaded on CI); the tutorial's row stands in.
        assert final["test_min_batch_accuracy"] >= published_lower(name)
        return
    bounds = section(tier, tier_dataset(tier))["configs"][name]
    assert final["test_accuracy"] >= bounds["test_accuracy"]["lower"]
    assert final["test_min_batch_accuracy"] >= bounds["test_min_batch_accuracy"]["lower"]
    assert final["train_loss"] <= bounds["train_loss"]["upper"]


@pytest.mark.parametrize("tier, claim", signed(calibrate.CLAIMS))
def test_gated_beats_vanilla(tier, claim, trained, tier_dataset):
    """At the same step budget a gated cell ends above the vanilla RNN by the calibrated margin.

    Skipped, with what calibration measured, where it gives the difference no sign: at 30 epochs of
    mnist-5k on Keras 3, lstm_fb5 led vanilla on every one of seeds 0-19, but by as little as 0.05,
    too little beside vanilla's spread for the margin rule to promise it on a new seed. That
    difference is still checked, against its two-sided band, by test_difference_in_band."""
    bound = section(tier, tier_dataset(tier))["claims"][claim]
    assert bound["lower"] > 0, f"calibration found vanilla ahead: {bound}"
    assert difference(tier, claim, trained) >= bound["lower"]


def first_tier_of_each_dataset():
    first = {}
    for name, tier in calibrate.TIERS.items():
        first.setdefault(tier.dataset, name)
    return tuple(first.values())


TRACKED = {**calibrate.CLAIMS, **calibrate.CURVE_FACTS}
# A difference pinned to an epoch is the same number in every tier of a dataset (same seed, same first
# epochs), so only the dataset's first tier checks it.
DIFFERENCES = [*over([n for n, (_, _, epoch) in TRACKED.items() if epoch is None]),
               *over([n for n, (_, _, epoch) in TRACKED.items() if epoch is not None], first_tier_of_each_dataset())]


@pytest.mark.parametrize("tier, name", DIFFERENCES)
def test_difference_in_band(tier, name, trained, tier_dataset):
    """Every tracked difference in test accuracy stays within its calibrated band, [lower, upper].

    This is what the suite can assert about the tutorial's curve facts. The tutorial showed lstm_fb5
    behind lstm after epoch 1 (0.62 against 0.70, one run); measured over seeds neither that nor the
    opposite holds on every seed (calibration.md: "no sign"), so neither is asserted, but a change in
    how forget_bias 5 shapes the curve that moves the difference outside everything calibration saw
    (plus the margin) fails here."""
    bound = section(tier, tier_dataset(tier))["claims"][name]
    assert bound["lower"] <= difference(tier, name, trained) <= bound["upper"]


def difference(tier, name, trained):
    a, b, epoch = TRACKED[name]
    return calibrate.difference(trained(tier, a), trained(tier, b), calibrate.TIERS[tier], epoch)


@pytest.mark.quick
def test_same_seed_same_history(trained, datasets, tier_dataset, seed):
    """The same seed gives the same history; two epochs are exactly the first two of a longer run.

    Pinned: vanilla at --rnn-seed (default 0) against the session's quick run.
    """
    longer = trained("quick", "vanilla").history()
    again = train.fit(configs.get("vanilla").replace(epochs=2), datasets(tier_dataset("quick")), seed, log=None)
    history = again.history()
    assert history["epochs"] == longer["epochs"][:2]
    assert history["steps"] == {k: v[:len(history["steps"]["loss"])] for k, v in longer["steps"].items()}


@pytest.mark.quick
def test_other_seed_other_history(trained, datasets, tier_dataset, seed):
    """A different seed (--rnn-seed + 1) gives a different history from the first step on."""
    other = train.fit(configs.get("vanilla").replace(epochs=1), datasets(tier_dataset("quick")), seed + 1, log=None)
    assert other.steps["loss"][0] != trained("quick", "vanilla").steps["loss"][0]
