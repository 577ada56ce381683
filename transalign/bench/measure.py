"""One timed alignment pass, end to end, as `transalign align` does it: words in, Pharaoh text out.

The Aligner's own ``AlignStats`` give the tokenize / encode / extract seconds and the real and
padded token counts; this adds the output step (formatting every pair's line, to memory) and the
wall time around all of it. `transalign bench` and `benchmarks/run.py` both time with this.
"""

from __future__ import annotations

import io
import time
import warnings

from transalign.formats.alignments import format_line

SECTIONS = ("tokenize", "encode", "extract", "output")


def measure_run(aligner, src, tgt, src_lang=None, tgt_lang=None, *, batch_tokens: int | None = None,
                on_too_long: str = "error", first_id: int | None = None) -> dict:
    """Align ``src``/``tgt`` once and write the links as text; returns the pass's measurements.

    ``e2e``: wall seconds of the whole pass; ``seconds``: per section (SECTIONS); ``text``: the
    output (``ID<TAB>`` before each line when ``first_id`` is given); token counts and the number
    of pairs skipped as too long (with ``on_too_long="skip"``).
    """
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped count is returned instead
        results = aligner.align(src, tgt, src_lang, tgt_lang, batch_tokens=batch_tokens, on_too_long=on_too_long)
    clock = time.perf_counter()
    out = io.StringIO()
    for k, result in enumerate(results):
        out.write(format_line(result.links, id=None if first_id is None else first_id + k) + "\n")
    end = time.perf_counter()
    stats = aligner.stats
    return {"e2e": end - start, "seconds": {**stats.seconds, "output": end - clock}, "text": out.getvalue(),
            "pairs": stats.pairs, "skipped": stats.skipped, "real_tokens": stats.real_tokens,
            "padded_tokens": stats.padded_tokens}
