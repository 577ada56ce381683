"""Parallel text for self-training (``finetune --parallel FILE``): pairs without gold.

Each file is read with the project's one parallel reader (:mod:`transalign.formats.parallel`,
``src ||| tgt`` or ``src<TAB>tgt`` lines). A row is skipped, counted under its reason and
reported on stderr as ``FILE:LINE: reason`` when the reader rejects it (no separator, more than
one, an empty side, invalid UTF-8), when a side tokenizes to no subword at all, or when a side
is longer than the model takes. Nothing is dropped silently, and ``training.json`` records, per
file, its sha256, the rows used and the rows skipped by reason.

The examples carry no gold matrix (``gold=None``): their target is computed during training from
the model's own similarity matrix (:func:`transalign.train.objective.self_training_target`).
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from transalign.formats.parallel import STDIN, ParallelPair, read_parallel
from transalign.formats.text import InputError
from transalign.train.gold import TrainError
from transalign.train.matrices import Example, encode_words


@dataclass
class ParallelSet:
    """One ``--parallel`` file after reading: its usable examples and what was skipped."""

    path: Path
    sha256: str | None  # None for standard input
    examples: list = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> rows

    def record(self) -> dict:
        """What training.json holds about the file."""
        return {"path": str(self.path), "sha256": self.sha256, "rows_used": len(self.examples),
                "rows_skipped": sum(self.skipped.values()), "skipped_by_reason": dict(sorted(self.skipped.items()))}


def file_sha256(path: Path) -> str | None:
    if str(path) == STDIN:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise TrainError(f"--parallel {path}: file not found") from None
    except IsADirectoryError:
        raise TrainError(f"--parallel {path}: is a directory, expected a file of 'src ||| tgt' lines") from None
    return digest.hexdigest()


def read_parallel_set(path: Path, tokenizer, src_lang, tgt_lang, max_tokens: int, log=None) -> ParallelSet:
    """Read and tokenize one parallel file; every skipped row is logged as ``FILE:LINE: reason``."""
    log = log or (lambda message: print(message, file=sys.stderr))
    result = ParallelSet(path, file_sha256(path))
    try:
        for row in read_parallel(path):
            reason = None
            if isinstance(row, ParallelPair):
                example, reason = _example(tokenizer, row, src_lang, tgt_lang, max_tokens, f"{path}:{row.line}")
                if example is not None:
                    result.examples.append(example)
                    continue
                line = row.line
            else:
                reason, line = row.reason, row.line
            kind = _kind(reason)
            result.skipped[kind] += 1
            log(f"transalign finetune: skipped {path}:{line}: {reason}")
    except InputError as exc:
        raise TrainError(f"--parallel {exc}") from None
    if not result.examples:
        raise TrainError(f"--parallel {path}: no usable sentence pair ({sum(result.skipped.values())} rows "
                         "skipped); lines are 'source ||| target' or 'source<TAB>target'")
    return result


def _example(tokenizer, row: ParallelPair, src_lang, tgt_lang, max_tokens: int, source: str):
    """(Example, None) or (None, why the row cannot be trained on)."""
    src = encode_words(tokenizer, row.src, src_lang)
    tgt = encode_words(tokenizer, row.tgt, tgt_lang)
    for side, enc in (("source", src), ("target", tgt)):
        if len(enc.ids) <= 2:
            return None, f"the {side} side tokenizes to no subword"
        if len(enc.ids) > max_tokens:
            return None, (f"too long: the {side} side is {len(enc.ids)} tokens but the model takes at most "
                          f"{max_tokens}")
    return Example(src, tgt, None, source), None


def _kind(reason: str) -> str:
    """A short category for the counts in training.json (the log keeps the full reason)."""
    for prefix, kind in (("too long", "too long"), ("not valid UTF-8", "invalid UTF-8"),
                         ("a lone surrogate", "invalid UTF-8"), ("more than one separator", "malformed"),
                         ("no separator", "malformed"), ("a run of", "malformed"), ("an empty line", "empty"),
                         ("neither side", "empty"), ("the source side holds", "empty"),
                         ("the target side holds", "empty"), ("the source side tokenizes", "no subword"),
                         ("the target side tokenizes", "no subword")):
        if reason.startswith(prefix):
            return kind
    return "other"
