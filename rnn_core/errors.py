"""Errors a user can act on: one line naming the parameter and what it accepts.

They are raised before TensorFlow runs anything, so the CLI can print them and exit 2
without a stack trace.
"""
import math


class UsageError(ValueError):
    """A parameter outside what rnn_core accepts."""


class DataError(UsageError):
    """Data that is missing, corrupt or of the wrong shape; the message names the file."""


def require(ok, name, accepted, got):
    if not ok:
        raise UsageError(f"{name} must be {accepted}, got {got!r}")


def positive_int(name, value):
    require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
            name, "a positive integer", value)
    return value


def non_negative_int(name, value):
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            name, "an integer >= 0", value)
    return value


def positive_float(name, value):
    require(_is_real(value) and value > 0 and math.isfinite(value), name, "a finite number > 0", value)
    return float(value)


def real(name, value):
    require(_is_real(value) and math.isfinite(value), name, "a finite number", value)
    return float(value)


def choice(name, value, accepted):
    require(value in accepted, name, "one of " + ", ".join(accepted), value)
    return value


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
