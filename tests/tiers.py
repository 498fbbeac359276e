"""Parametrizing a claim over tiers and configurations, and the calibrated bound for each."""
import pytest

from rnn_core import calibrate
from rnn_core.configs import PUBLISHED

MARKS = {"quick": [pytest.mark.quick], "default": [], "slow": [pytest.mark.slow]}
# On full MNIST the only reference is the tutorial's single run; its bound allows this much below it.
PUBLISHED_MARGIN = 0.05


def over(names, tiers=tuple(calibrate.TIERS)):
    """pytest params (tier, name) with ids like 'quick-lstm' and each tier's marker."""
    return [pytest.param(tier, name, id=f"{tier}-{name}", marks=MARKS[tier]) for tier in tiers for name in names]


def section(tier, dataset):
    """The calibration table's section for tier on dataset with this Keras major, or a skip saying why."""
    from rnn_core.compat import KERAS_MAJOR
    entry = calibrate.load()["keras"].get(f"keras{KERAS_MAJOR}", {})
    found = entry.get("tiers", {}).get(tier)
    if found is None or found["dataset"] != dataset:
        pytest.skip(f"no calibration for tier {tier} on {dataset} with Keras {KERAS_MAJOR}: "
                    f"run rnn-core calibrate --tiers {tier}")
    return found


def published_lower(name):
    """The tutorial's min-batch accuracy less PUBLISHED_MARGIN: the bound on full MNIST."""
    return PUBLISHED[name]["test_min_batch_accuracy"] - PUBLISHED_MARGIN


def signed(names):
    """over(names), skipping with the reason each (tier, name) whose calibrated difference has no sign
    (its bounds include 0): the claim stays listed, the skip says what calibration measured, and the
    difference is still checked against its band by test_difference_in_band."""
    from rnn_core.compat import KERAS_MAJOR
    tiers = calibrate.load()["keras"].get(f"keras{KERAS_MAJOR}", {}).get("tiers", {})
    params = []
    for param in over(names):
        tier, name = param.values
        claim = tiers.get(tier, {}).get("claims", {}).get(name)
        if claim is not None and not calibrate.has_sign(claim):
            reason = (f"not asserted: calibration (Keras {KERAS_MAJOR}, {claim['n']} seeds) gives {name} no sign at "
                      f"{tier}: seeds ranged {claim['min']:.3f} to {claim['max']:.3f}, bounds {claim['lower']:.3f} to "
                      f"{claim['upper']:.3f} include 0; test_difference_in_band[{param.id}] checks that band")
            param = pytest.param(*param.values, id=param.id, marks=[*param.marks, pytest.mark.skip(reason=reason)])
        params.append(param)
    return params
