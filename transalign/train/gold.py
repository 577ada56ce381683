"""Gold alignment sets in the layout of data/gold/csen: a directory per language pair.

    DIR/src.txt    one source sentence per line, words separated by whitespace
    DIR/tgt.txt    its translation, line for line
    DIR/gold.txt   ``i-j`` sure and ``ipj`` possible links (0-based word indices, source-target)
    DIR/meta.json  optional; ``src_lang`` / ``tgt_lang`` give the NLLB language codes

Every problem is a :class:`TrainError` naming the file and line: a missing file, different line
counts, a malformed link, a link outside its sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transalign.formats.alignments import FormatError, iter_alignments

Link = tuple[int, int]
FILES = ("src.txt", "tgt.txt", "gold.txt")


class TrainError(ValueError):
    """Fine-tuning cannot proceed: bad gold data, options, model or output path."""


@dataclass(frozen=True)
class GoldPair:
    src: tuple[str, ...]
    tgt: tuple[str, ...]
    sure: frozenset[Link]
    possible: frozenset[Link]  # possible links that are not also sure
    line: int  # 1-based line in the gold set's files

    def links(self, which: str) -> frozenset[Link]:
        """``"all"``: sure and possible links (the training target by default); ``"sure"``."""
        return self.sure | self.possible if which == "all" else self.sure


@dataclass(frozen=True)
class GoldSet:
    path: Path
    pairs: tuple[GoldPair, ...]
    src_lang: str | None = None
    tgt_lang: str | None = None

    def __len__(self) -> int:
        return len(self.pairs)


def _sentences(path: Path) -> list[tuple[str, ...]]:
    return [tuple(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]


def read_gold_dir(directory: str | Path) -> GoldSet:
    root = Path(directory)
    if not root.is_dir():
        raise TrainError(f"gold directory {root} does not exist")
    missing = [name for name in FILES if not (root / name).is_file()]
    if missing:
        raise TrainError(f"gold directory {root} lacks {', '.join(missing)}; expected {', '.join(FILES)} "
                         "(and optionally meta.json)")
    src, tgt = _sentences(root / "src.txt"), _sentences(root / "tgt.txt")
    try:
        lines = list(iter_alignments(root / "gold.txt", allow_possible=True, fmt="pharaoh"))
    except FormatError as exc:
        raise TrainError(str(exc)) from None
    counts = {"src.txt": len(src), "tgt.txt": len(tgt), "gold.txt": len(lines)}
    if len(set(counts.values())) != 1:
        raise TrainError(f"gold directory {root}: different line counts "
                         + ", ".join(f"{k} {v}" for k, v in counts.items()) + " (one line per sentence pair)")
    pairs = []
    for k, (s, t, g) in enumerate(zip(src, tgt, lines), start=1):
        for i, j in sorted(g.sure | g.possible):
            if not (0 <= i < len(s) and 0 <= j < len(t)):
                raise TrainError(f"{root / 'gold.txt'}:{k}: link {i}-{j} is outside the pair: the source has "
                                 f"{len(s)} words and the target {len(t)} (links are 0-based, source-target)")
        pairs.append(GoldPair(s, t, g.sure, g.possible, k))
    if not pairs:
        raise TrainError(f"gold directory {root} holds no sentence pairs")
    src_lang, tgt_lang = _languages(root)
    return GoldSet(root, tuple(pairs), src_lang, tgt_lang)


def _languages(root: Path) -> tuple[str | None, str | None]:
    meta = root / "meta.json"
    if not meta.is_file():
        return None, None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TrainError(f"{meta}: not valid JSON ({exc})") from None
    return data.get("src_lang"), data.get("tgt_lang")
