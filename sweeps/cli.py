"""The ``seedsweep`` command."""

from __future__ import annotations

import argparse
import sys

from envs import cli as envs_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seedsweep", description="Success probabilities across many random seeds.")
    sub = parser.add_subparsers(dest="command", required=True)
    envs_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError) as err:
        print(f"seedsweep: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
