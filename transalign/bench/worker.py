"""One benchmark variant in its own process: ``python -m transalign.bench.worker SPEC OUT``.

A process per variant makes load time and peak RSS (VmHWM) that variant's own: nothing loaded
for an earlier variant inflates the next. SPEC is a JSON file (bundle, precision, provider,
threads, batch tokens, languages, the pairs file, repeat, latency pairs); OUT receives the raw
measurements as JSON and ``OUT.links`` the links of the first timed pass (for agreement).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from transalign.bench.defaults import WARMUP_PAIRS
from transalign.bench.measure import measure_run
from transalign.bench.stats import nearest_to_quantile, peak_rss_mb


def _run_spec(spec: dict) -> tuple[dict, str]:
    from transalign.engine.aligner import Aligner

    with open(spec["pairs_file"], encoding="utf-8") as handle:
        pairs = json.load(handle)
    src, tgt = pairs["src"], pairs["tgt"]
    langs = spec["src_lang"], spec["tgt_lang"]
    options = {"batch_tokens": spec["batch_tokens"], "on_too_long": "skip"}
    clock = time.perf_counter()
    aligner = Aligner.load(spec["bundle"], provider=spec["provider"], precision=spec["precision"],
                           threads=spec["threads"])
    load_s = time.perf_counter() - clock
    rss_after_load = peak_rss_mb()

    clock = time.perf_counter()  # untimed: JIT, allocator, first shapes, page faults
    k = min(len(src), WARMUP_PAIRS)
    measure_run(aligner, src[:k], tgt[:k], *langs, **options)
    warmup_s = time.perf_counter() - clock

    runs, first_text = [], None
    identical = True
    for _ in range(spec["repeat"]):
        run = measure_run(aligner, src, tgt, *langs, **options)
        text = run.pop("text")
        first_text = text if first_text is None else first_text
        identical &= text == first_text
        runs.append(run)

    latency = _latency(aligner, src, tgt, langs, options, spec["latency_pairs"], spec["repeat"])
    import numba

    raw = {"pid": os.getpid(), "load_s": load_s, "warmup_s": warmup_s, "warmup_pairs": k,
           "rss_after_load_mb": rss_after_load, "runs": runs, "identical_across_runs": identical,
           "links_sha256": hashlib.sha256(first_text.encode()).hexdigest(), "latency": latency,
           "provider_resolved": aligner.provider, "numba_threads": numba.get_num_threads(), **ran_with(aligner),
           "torch_imported": "torch" in sys.modules, "peak_rss_mb": peak_rss_mb()}
    return raw, first_text


def ran_with(aligner) -> dict:
    """What really ran, read back from the session rather than the request: the provider ONNX
    Runtime kept (a CUDA that could not start would show as cpu), the precision of the graph,
    and the intra-op threads (asking for more than the cores gives the cores, with a warning)."""
    from transalign.engine.session import session_provider

    session = getattr(aligner, "session", None)
    if session is None:  # the session may live on an encoder object
        session = aligner.encoder.session
    threads = session.get_session_options().intra_op_num_threads  # 0: ONNX Runtime's default
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"provider_ran": session_provider(session), "session_providers": list(session.get_providers()),
            "precision_ran": aligner.precision, "threads_used": threads or cores}


def _latency(aligner, src, tgt, langs, options, n_pairs: int, rounds: int) -> dict:
    """One pair per call, warm: the ``n_pairs`` pairs nearest the median total token count,
    one untimed round, then ``rounds`` timed rounds."""
    if n_pairs <= 0:
        return {"indices": [], "pair_tokens": [], "samples_s": []}
    tok = aligner.tokenizer
    encoded = zip(tok.encode_batch(src, langs[0]), tok.encode_batch(tgt, langs[1]))
    lengths = [len(a) + len(b) for (a, _), (b, _) in encoded]
    indices = nearest_to_quantile(lengths, 0.5, min(n_pairs, len(src)))
    for i in indices:
        measure_run(aligner, src[i:i + 1], tgt[i:i + 1], *langs, **options)
    samples = [measure_run(aligner, src[i:i + 1], tgt[i:i + 1], *langs, **options)["e2e"]
               for _ in range(rounds) for i in indices]
    return {"indices": indices, "pair_tokens": [lengths[i] for i in indices], "samples_s": samples}


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = argv if argv is not None else sys.argv[1:]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    try:
        raw, text = _run_spec(spec)
    except (ValueError, OSError) as exc:  # user-facing (bundle, provider, language): the parent reports it
        with open(out_path, "w", encoding="utf-8") as handle:
            json.dump({"error": str(exc), "pid": os.getpid()}, handle)
        return 2
    with open(out_path + ".links", "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(raw, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
