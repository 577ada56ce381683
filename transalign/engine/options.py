"""The engine's policy, once: which options go together, which language codes a bundle needs,
which limits hold. Every front end (the CLI, the service, corpus jobs, bench, tune, fine-tuning's
dev scoring) builds its options here and only translates `OptionError` into its own form: the
CLI names its flag (``--src-lang``), the service its field (``src_lang``) and a 4xx, the C library
(which restates these rules in C++) a status and a message.

- `LoadOptions`: how a bundle is opened (precision, provider, threads, padded-token budget, hash
  checks), validated when made, so a server refuses a bad flag at start-up.
- `resolve_extraction`: the `Extraction` a call asks for, the bundle's recommended setting
  (manifest ``default_method`` / ``default_word_level`` / ``default_threshold``) filling what the
  caller left out; a threshold belongs to method softmax only.
- `resolve_languages`: NLLB-style bundles need both codes and know them; bundles without codes
  (BERT family) drop given ones, which the caller learns through ``Languages.ignored``.
- `max_sentence_chars`: the characters a sentence may hold before it is tokenized at all.

Standard library only at import time (the CLI reads these names for its help).
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from transalign.engine.defaults import DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS

PRECISIONS = ("fp32", "int8", "fp16")  # engine.bundle.PRECISIONS, restated without its import
PROVIDER_CHOICES = ("auto", "cpu", "cuda")  # engine.session.PROVIDER_CHOICES
LENGTH_POLICIES = ("error", "skip")
PIPELINE_CHOICES = ("auto", "on", "off")  # LoadOptions.pipeline
# A sentence may hold at most this many characters per model position. Natural text averages a
# few characters per subword token, so a sentence refused by this bound would in practice not
# have fitted the model's positions anyway; the bound exists so that a 10 MB line without spaces
# is refused in microseconds instead of being tokenized for seconds and gigabytes first. The C
# library applies the same number.
CHARS_PER_POSITION = 32
SIDES = {"src_lang": "source", "tgt_lang": "target"}
# the rule's words, for front ends whose own validator (the service's schema) checks the range first
THRESHOLD_RULE = "must be a number in [0, 1), e.g. 0.001 (the paper's)"


class OptionError(ValueError):
    """A bad option value. ``option`` is the engine's name for it (``src_lang``, ``threshold``,
    ``batch_tokens`` ...); front ends show it under their own name with `named`."""

    def __init__(self, option: str, value: object, reason: str):
        self.option, self.value, self.reason = option, value, reason
        super().__init__(self.named(option))

    def named(self, name: str) -> str:
        """The message with ``name`` (a CLI flag, a JSON field) for the option."""
        return f"{name} {_show(self.value)}: {self.reason}"


class LanguageError(OptionError):
    """A language code a bundle cannot use: missing (``code`` None) or unknown (``matches``: the
    closest codes it knows)."""

    def __init__(self, option: str, code: str | None, reason: str, matches: Sequence[str] = ()):
        self.side, self.code, self.matches = SIDES[option], code, tuple(matches)
        super().__init__(option, code, reason)

    def named(self, name: str) -> str:
        if self.code is None:
            return f"{name} is required: {self.reason}"
        return super().named(name)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- languages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Languages:
    """The codes a call runs with, the options given to a bundle without codes and dropped, and
    the ISO 639-3 codes read as the bundle's one code for that language (``("src_lang", "ces",
    "ces_Latn")``), so front ends can say what they used."""

    src: str | None
    tgt: str | None
    ignored: tuple[str, ...] = ()
    mapped: tuple[tuple[str, str, str], ...] = ()


def resolve_languages(manifest, src_lang: str | None, tgt_lang: str | None) -> Languages:
    """Both codes checked against the bundle's table (``manifest.tokenizer.lang_code_ids``).

    A bundle with codes (NLLB: every sentence starts with its language's token) needs both and
    refuses unknown ones, suggesting the closest (case-insensitive: ``CES_latn`` -> ``ces_Latn``).
    A bare ISO 639-3 code is read as the bundle's code when exactly one code has it
    (``ces`` -> ``ces_Latn``; ``zho`` with two scripts stays an error listing both).
    A bundle without codes ignores them: ``Languages.ignored`` names those given, so the front end
    can say so in its own way."""
    table = manifest.tokenizer.lang_code_ids
    given = {"src_lang": src_lang, "tgt_lang": tgt_lang}
    if not table:
        return Languages(None, None, tuple(name for name, code in given.items() if code is not None))
    used = {option: canonical_language(table, option, code, manifest.architecture) for option, code in given.items()}
    mapped = tuple((option, given[option], used[option]) for option in given if used[option] != given[option])
    return Languages(used["src_lang"], used["tgt_lang"], mapped=mapped)


def canonical_language(known: Sequence[str], option: str, code: object, architecture: str = "this") -> str:
    """``code`` if the bundle knows it, the one known code of a bare ISO 639-3 code, else
    `LanguageError`."""
    if isinstance(code, str) and code in known:
        return code
    if isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha():
        scripts = [c for c in known if c.split("_")[0] == code.lower()]
        if len(scripts) == 1:
            return scripts[0]
    check_language(known, option, code, architecture)
    return code  # not reached: check_language raised


def check_language(known: Sequence[str], option: str, code: object, architecture: str = "this") -> None:
    """Raise `LanguageError` unless ``code`` is one of ``known``."""
    if code is None:
        raise LanguageError(option, None, f"this {architecture} bundle starts every {SIDES[option]} sentence "
                            f"with its language code, e.g. {_example(known)}")
    if isinstance(code, str) and code in known:
        return
    if not isinstance(code, str):
        raise LanguageError(option, code, "a language code is a string, e.g. " + _example(known))
    matches = close_codes(code, known)
    hint = f"; closest: {', '.join(matches)}" if matches else ""
    if len(code) == 2 and code.isalpha():
        hint += ("; two-letter ISO 639-1 codes are not used: write the ISO 639-3 code and script, e.g. ces_Latn "
                 "for cs (Czech), eng_Latn for en")
    raise LanguageError(option, code, f"unknown language code{hint} ({len(known)} codes known, "
                        f"e.g. {', '.join(sorted(known)[:3])})", matches)


def close_codes(code: str, known: Sequence[str]) -> list[str]:
    """Up to five known codes close to ``code``: a case-insensitive exact match first, then
    difflib's nearest, then codes sharing its first three letters ('english' -> eng_Latn)."""
    by_lower = {c.lower(): c for c in known}
    close = [by_lower[c] for c in difflib.get_close_matches(code.lower(), list(by_lower), n=5, cutoff=0.5)]
    exact = by_lower.get(code.lower())
    if exact:
        close = [exact] + [c for c in close if c != exact][:4]
    if not close:
        close = sorted(c for c in known if c.lower().startswith(code.lower()[:3]))[:5]
    return close


def _example(known: Sequence[str]) -> str:
    return "eng_Latn" if "eng_Latn" in known else (sorted(known)[0] if known else "eng_Latn")


def any_language(manifest) -> str | None:
    """A code this bundle accepts, for warm-up calls (None: it needs none)."""
    table = manifest.tokenizer.lang_code_ids
    return _example(table) if table else None


# -- extraction --------------------------------------------------------------------------------


def resolve_extraction(manifest, method: str | None = None, word_level: str | None = None,
                       threshold: float | None = None, scores: bool = False):
    """The checked `transalign.kernels.Extraction` of a call.

    None takes the bundle's recommended value: ``manifest.default_method`` and
    ``default_word_level``; the threshold of method softmax is ``manifest.default_threshold``
    (0.001 for NLLB, the paper's). A threshold given with another method is an error: it would be
    silently unused."""
    from transalign.kernels.names import METHODS, WORD_LEVELS

    method = manifest.default_method if method is None else method
    word_level = manifest.default_word_level if word_level is None else word_level
    if method not in METHODS:
        raise OptionError("method", method, f"not one of {', '.join(METHODS)}")
    if word_level not in WORD_LEVELS:
        raise OptionError("word_level", word_level, f"not one of {', '.join(WORD_LEVELS)}")
    if not isinstance(scores, bool):
        raise OptionError("scores", scores, "must be true or false")
    if threshold is not None and method != "softmax":
        raise OptionError("threshold", threshold, f"applies to method softmax only, not to {method}; leave it out")
    value = check_threshold(manifest.default_threshold if threshold is None else threshold)
    from transalign.kernels import Extraction

    return Extraction(method, word_level, value, scores)


def check_threshold(value: object) -> float:
    """A softmax threshold: a real number in [0, 1) (`OptionError` "threshold" otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise OptionError("threshold", value, THRESHOLD_RULE)
    return float(value)


# -- loading and limits ------------------------------------------------------------------------


def _check_int(option: str, value: object, low: int, high: int | None, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low \
            or (high is not None and value > high):
        raise OptionError(option, value, what)


@dataclass(frozen=True)
class LoadOptions:
    """How a bundle is opened; checked when made (`Aligner.load` takes it as is).

    ``batch_tokens``: padded tokens per encoder batch (None: the provider's default, see
    `budget`); results never depend on it. ``threads``: ONNX Runtime intra-op and kernel threads
    (None: all cores; more than the cores are clamped at load, with a notice). ``pipeline``:
    overlap tokenizing and extracting with the encoder in `Aligner.align_iter` (engine.pipeline);
    "auto" is on for CUDA and off for CPU, where the stages only compete for the same cores
    (benchmarks/pipeline_cpu.py); results never depend on it."""

    precision: str = "fp32"
    provider: str = "auto"
    threads: int | None = None
    batch_tokens: int | None = None
    verify: bool = True
    pipeline: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise OptionError("precision", self.precision, f"not one of {', '.join(PRECISIONS)}")
        if self.provider not in PROVIDER_CHOICES:
            raise OptionError("provider", self.provider, f"not one of {', '.join(PROVIDER_CHOICES)}")
        if self.threads is not None:
            _check_int("threads", self.threads, 1, None, "must be an integer >= 1 (default: all cores)")
        if self.batch_tokens is not None:
            _check_int("batch_tokens", self.batch_tokens, 1, MAX_BATCH_TOKENS,
                       f"must be an integer in 1..{MAX_BATCH_TOKENS} (default {DEFAULT_BATCH_TOKENS['cpu']} on "
                       f"CPU, {DEFAULT_BATCH_TOKENS['cuda']} on CUDA)")
        if not isinstance(self.verify, bool):
            raise OptionError("verify", self.verify, "must be true or false")
        if self.pipeline not in PIPELINE_CHOICES:
            raise OptionError("pipeline", self.pipeline, f"not one of {', '.join(PIPELINE_CHOICES)}")

    def budget(self, provider: str) -> int:
        """The padded-token budget on the resolved ``provider`` ("cpu" or "cuda")."""
        return DEFAULT_BATCH_TOKENS[provider] if self.batch_tokens is None else int(self.batch_tokens)

    def pipelined(self, provider: str) -> bool:
        """Whether `Aligner.align_iter` pipelines on the resolved ``provider``."""
        return self.pipeline == "on" or (self.pipeline == "auto" and provider == "cuda")


def check_batch_tokens(value: object, option: str = "batch_tokens") -> int:
    """A per-call padded-token budget, checked like `LoadOptions.batch_tokens`."""
    _check_int(option, value, 1, MAX_BATCH_TOKENS, f"must be an integer in 1..{MAX_BATCH_TOKENS}")
    return int(value)


def check_length_policy(value: object) -> str:
    if value not in LENGTH_POLICIES:
        raise OptionError("on_too_long", value, f"not one of {', '.join(LENGTH_POLICIES)}")
    return value


def max_sentence_chars(max_positions: int) -> int:
    """Characters (Python ``len`` of the words, whitespace between them not counted) a sentence
    may hold: `CHARS_PER_POSITION` per model position. Checked before tokenizing."""
    return CHARS_PER_POSITION * int(max_positions)
