"""``argparse`` value types shared by the command-line scripts.

Each raises ``argparse.ArgumentTypeError`` naming the bad value, so ``argparse`` reports it and
exits with code 2.
"""

import argparse


def positive_int(text: str) -> int:
    """An int ≥ 1.

    Examples:
      >>> positive_int("3")
      3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0.

    Examples:
      >>> positive_float("0.5")
      0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {value}")
    return value
