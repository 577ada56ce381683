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

# subcommand -> its module under transalign.cli, in the order shown by --help
_COMMANDS = {
    "export": "export_cmd",
    "align": "align_cmd",
    "align-corpus": "align_corpus_cmd",
    "serve": "serve_cmd",
    "eval": "eval_cmd",
    "project": "project_cmd",
    "project-with": "project_with_cmd",
    "tune": "tune_cmd",
    "eval-bio": "eval_bio_cmd",
    "bench": "bench_cmd",
    "finetune": "finetune_cmd",
}


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback, exit code 2."""


# the extra that provides a command's optional dependencies (pyproject.toml)
_EXTRAS = {"export": "export", "finetune": "train", "serve": "serve", "eval-bio": "eval", "align-corpus": "ray"}


def _missing_module(command: str, exc: ModuleNotFoundError) -> str:
    """'pip install ...' for a dependency the installed extras lack, instead of a traceback."""
    extra = _EXTRAS.get(command)
    hint = f"pip install 'transalign[{extra}]'" if extra else f"pip install {exc.name}"
    return f"this command needs {exc.name!r}, which is not installed: {hint}"


def _show_warning(command: str):
    """Warnings as one line naming the command, without Python's source-line echo."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"transalign {command}: warning: {message}", file=sys.stderr)
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transalign",
        description="TransAlign word alignment: export a model to a bundle, align, evaluate, project labels.",
    )
    from transalign import __version__

    parser.add_argument("--version", action="version", version=f"transalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS.values():
        importlib.import_module(f"transalign.cli.{module}").register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM, turned into an exception so open outputs remove their temporary files."""


def _terminate(signum, frame):
    raise Terminated


def _quiet_broken_pipe() -> int:
    """A reader closed our stdout (``| head``): stop quietly with the conventional 141 (128 + SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    import warnings

    from transalign.engine.options import OptionError

    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning(args.command)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Terminated:
        print(f"transalign {args.command}: terminated; no partial output was kept", file=sys.stderr)
        return 143
    except OptionError as exc:
        from transalign.cli.options import flag_of

        print(f"transalign {args.command}: error: {exc.named(flag_of(exc.option))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "transalign":
            raise
        print(f"transalign {args.command}: error: {_missing_module(args.command, exc)}", file=sys.stderr)
        return 2
    except (UserError, ValueError, OSError) as exc:
        # ValueError subclasses (BundleError, ExportError, FormatError...) carry user-facing text.
        print(f"transalign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"transalign {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_show
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
