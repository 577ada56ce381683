"""The `transalign` command: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable taking the parsed arguments and returning an exit code.
Subcommand modules import their heavy dependencies inside ``func`` so `transalign --help`
stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, subcommand) in the order shown by --help
_COMMANDS = ("export", "align", "eval", "project")
_MODULES = {"export": "export_cmd", "align": "align_cmd", "eval": "eval_cmd", "project": "project_cmd"}


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transalign",
        description="TransAlign word alignment: export a model to a bundle, align, evaluate, project labels.",
    )
    from transalign import __version__

    parser.add_argument("--version", action="version", version=f"transalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        module = importlib.import_module(f"transalign.cli.{_MODULES[name]}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError) as exc:
        # ValueError subclasses (BundleError, ExportError, FormatError...) carry user-facing text.
        print(f"transalign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"transalign {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
