"""The flags every aligning command shares, built from the engine's option types.

Defaults and allowed values come from `transalign.engine.options` and `engine.defaults`, never
restated here; the CLI's only job is naming: `flag_of` maps an engine option to its flag, and
`transalign.cli.main` prints any `OptionError` under that flag. A command whose flag differs
(``serve --max-batch-tokens``) passes its own ``flags`` table to `load_options`.
"""

from __future__ import annotations

import argparse

from transalign.engine.defaults import DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS
from transalign.engine.options import PIPELINE_CHOICES, PRECISIONS, PROVIDER_CHOICES
from transalign.kernels.names import METHODS, WORD_LEVELS

# engine option -> flag, where the flag is not "--" + the option with dashes
_FLAGS = {"on_too_long": "--skip-long", "scores": "--output-format"}


def flag_of(option: str) -> str:
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def add_language_flags(p: argparse.ArgumentParser, src_help: str | None = None, tgt_help: str | None = None) -> None:
    p.add_argument("--src-lang", help=src_help or "source language code, e.g. bam_Latn (required for NLLB bundles; "
                   "bundles without codes ignore it, with a warning)")
    p.add_argument("--tgt-lang", help=tgt_help or "target language code, e.g. eng_Latn (required for NLLB bundles)")


def add_extraction_flags(p: argparse.ArgumentParser) -> None:
    """--method, --word-level, --threshold; left out, each is the bundle's recommended value
    (the NLLB export's: softmax, any, 0.001, the paper's rule; `transalign tune --write` stores another)."""
    p.add_argument("--method", choices=METHODS,
                   help="softmax: both softmaxes of the similarities above the threshold (the paper's); "
                        "argmax: row and column maximum of the similarities (SimAlign's ArgMax); "
                        "itermax: SimAlign's IterMax, argmax plus a second round for unaligned words "
                        "(default: the bundle's, see `transalign export --help`)")
    p.add_argument("--word-level", choices=WORD_LEVELS,
                   help="any: words are linked when any of their subwords are (the paper's); mean: align "
                        "mean-pooled subword vectors of each word (SimAlign's) (default: the bundle's)")
    p.add_argument("--threshold", type=float, help="alignment threshold of --method softmax, in [0, 1) "
                   "(default: the bundle's, 0.001 for NLLB)")


def add_load_flags(p: argparse.ArgumentParser, *, batch_tokens: bool = True, pipeline: bool = False) -> None:
    """--provider, --precision, --batch-tokens, --threads, and --pipeline for the commands it
    changes: those that stream through `Aligner.align_iter`, and `serve` (its worker)."""
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                   help="execution provider: auto = CUDA when this onnxruntime has it, else CPU (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32: exact; int8: CPU, fastest there; fp16: CUDA (default: fp32)")
    if batch_tokens:
        p.add_argument("--batch-tokens", type=int, help=f"padded tokens per encoder batch, 1..{MAX_BATCH_TOKENS} "
                       f"(default {DEFAULT_BATCH_TOKENS['cpu']} CPU, {DEFAULT_BATCH_TOKENS['cuda']} CUDA); results do "
                       "not depend on it")
    p.add_argument("--threads", type=int, help="CPU threads, at most the number of cores (more are clamped, with a "
                   "warning; default: all cores)")
    if pipeline:
        p.add_argument("--pipeline", choices=PIPELINE_CHOICES, default="auto",
                       help="overlap tokenizing and extracting with the encoder: auto = on with CUDA, off on CPU "
                            "(where it measured no gain); results never depend on it (default: auto)")


def load_options(args):
    """The `LoadOptions` of the parsed flags (an `OptionError` names its flag via `main`)."""
    from transalign.engine.options import LoadOptions

    return LoadOptions(precision=args.precision, provider=args.provider, threads=args.threads,
                       batch_tokens=getattr(args, "batch_tokens", None), pipeline=getattr(args, "pipeline", "auto"))


def extraction(args, manifest, scores: bool = False):
    """The `Extraction` of --method/--word-level/--threshold for this bundle."""
    from transalign.engine.options import resolve_extraction

    return resolve_extraction(manifest, args.method, args.word_level, args.threshold, scores)


def languages(args, manifest, command: str):
    """--src-lang/--tgt-lang resolved for this bundle; codes it does not use are dropped with a
    warning naming the flag."""
    import sys

    from transalign.engine.options import resolve_languages

    resolved = resolve_languages(manifest, args.src_lang, args.tgt_lang)
    for option in resolved.ignored:
        print(f"transalign {command}: warning: {flag_of(option)} {getattr(args, option)} is ignored: this "
              f"{manifest.architecture} bundle has no language codes", file=sys.stderr)
    for option, given, used in resolved.mapped:
        print(f"transalign {command}: note: {flag_of(option)} {given} is read as {used}", file=sys.stderr)
    return resolved


class _BundleHelp(argparse.Action):
    """``-h/--help`` that, after ``BUNDLE`` (``transalign align BUNDLE --help``), also prints that
    bundle's recommended extraction: the values the extraction flags default to."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        bundle = getattr(namespace, "bundle", None)
        if bundle:
            print(f"\n{bundle_defaults(bundle)}")
        parser.exit()


def bundle_defaults(bundle: str) -> str:
    """'defaults of BUNDLE: --method softmax --word-level any --threshold 0.001' (or why not)."""
    from transalign.engine.bundle import read_manifest

    try:
        manifest = read_manifest(bundle, verify_hashes=False)
    except ValueError as exc:
        return f"(cannot show the defaults of {bundle}: {exc})"
    threshold = f" --threshold {manifest.default_threshold:g}" if manifest.default_method == "softmax" else ""
    return (f"defaults of {bundle}: --method {manifest.default_method} --word-level {manifest.default_word_level}"
            f"{threshold}")


def add_bundle_argument(p: argparse.ArgumentParser) -> None:
    """The BUNDLE positional, and a --help that shows its defaults when given after it. The
    parser must be made with ``add_help=False``."""
    p.add_argument("-h", "--help", action=_BundleHelp,
                   help="show this help and exit; after BUNDLE, also the bundle's default extraction")
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
