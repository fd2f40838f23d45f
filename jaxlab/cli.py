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


def reproduction_parser(description: str, sizes: dict) -> argparse.ArgumentParser:
    """A parser with the flags every ``scripts/reproduce`` script has: ``--workdir`` and
    ``--size`` (one of ``sizes``, default ``full``)."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", required=True, help="output directory (created if missing)")
    p.add_argument("--size", choices=sorted(sizes), default="full")
    return p


def preset(sizes: dict, args: argparse.Namespace, names=None) -> dict:
    """The settings of ``sizes[args.size]``, each overridden by the flag of the same name when it
    was given (not None); ``names`` limits which settings flags may override (default: all).

    Examples:
      >>> args = argparse.Namespace(size="full", steps=3, lr=None)
      >>> preset({"full": {"steps": 10, "lr": 0.1}}, args)
      {'steps': 3, 'lr': 0.1}
    """
    settings = dict(sizes[args.size])
    for name in settings if names is None else names:
        if getattr(args, name, None) is not None:
            settings[name] = getattr(args, name)
    return settings
