"""`finetune()`: gold word alignments and/or parallel text -> a trained TransAlign LoRA adapter.

The procedure follows the authors' ``fine-tune-lora.py``: LoRA r=8, alpha=32, dropout 0.1 on
the FFN projections, AdamW (lr 1e-4), batches drawn from one gold set (one language pair) at a
time, the loss on the similarity softmaxes of the alignment layer against the gold subword
matrices (``transalign.train.objective``). Added: a seed that makes runs repeatable, dev AER
after every epoch (and before the first), and keeping the best epoch's weights; and
self-training on parallel text without gold (``parallel`` files, issue 28): those pairs' targets
are the model's own alignments from the same forward pass (``objective.self_training_target``).
A batch holds pairs of one gold set or one parallel file, so a language pair is never mixed.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transalign.train.gold import GoldSet, TrainError, read_gold_dir
from transalign.train.objective import DEFAULT_OBJECTIVE, OBJECTIVES


@dataclass(frozen=True)
class FinetuneOptions:
    """Validated on construction, so bad values fail before any model loads."""

    model: str
    gold_dirs: tuple[Path, ...]
    out: Path
    dev_dir: Path | None = None
    parallel: tuple[Path, ...] = ()  # parallel-text files for self-training (no gold)
    src_lang: str | None = None  # NLLB codes of the parallel files (and of gold sets without meta.json)
    tgt_lang: str | None = None
    self_threshold: float | None = None  # self-training target threshold; None: the dev threshold
    layer: int | None = None  # None: the model family's reference layer (NLLB 12, e5 6, ...)
    threshold: float | None = None  # dev extraction; None: the family's reference threshold
    objective: str = DEFAULT_OBJECTIVE
    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01  # torch.optim.AdamW's default, which the authors' script keeps
    seed: int = 0
    r: int = 8
    alpha: float = 32.0
    dropout: float = 0.1
    links: str = "all"  # train on sure + possible links, or "sure" only
    device: str = "auto"
    progress: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TrainError(f"objective {self.objective!r} is not supported; choose from {', '.join(OBJECTIVES)}")
        if self.links not in ("all", "sure"):
            raise TrainError(f"links {self.links!r} is not supported; choose all or sure")
        for name in ("epochs", "batch_size", "r"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} {getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise TrainError(f"lr {self.lr} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainError(f"dropout {self.dropout} must be in [0, 1)")
        for name in ("threshold", "self_threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not 0.0 <= value < 1.0):
                raise TrainError(f"{name} {value!r} must be a number in [0, 1)")
        if not self.gold_dirs and not self.parallel:
            raise TrainError("nothing to train on: give at least one gold directory (--gold-dir) or parallel-text "
                             "file (--parallel)")


@dataclass(frozen=True)
class FinetuneResult:
    out: Path
    best_epoch: int  # 0 = the untrained adapter was best on dev (it is written then: B = 0)
    history: tuple[dict, ...]  # per epoch: train loss, steps, seconds, dev scores
    seconds: float
    info: dict = field(repr=False, default_factory=dict)  # what training.json holds


def finetune(model: str, gold_dirs, out, **options) -> FinetuneResult:
    """Train a LoRA for ``model`` on ``gold_dirs`` (and/or ``parallel=[files]``) and write it to
    ``out``; see FinetuneOptions."""
    if isinstance(gold_dirs, (str, Path)):
        gold_dirs = [gold_dirs]
    parallel = options.pop("parallel", ())
    parallel = [parallel] if isinstance(parallel, (str, Path)) else parallel
    dev = options.pop("dev_dir", None)
    opts = FinetuneOptions(model=str(model), gold_dirs=tuple(Path(g) for g in gold_dirs or ()), out=Path(out),
                           dev_dir=Path(dev) if dev else None, parallel=tuple(Path(p) for p in parallel),
                           **options)
    return run_finetune(opts)


def run_finetune(opts: FinetuneOptions) -> FinetuneResult:
    import torch

    from transalign.train import adapter
    from transalign.train.model import load_trainable, lora_state, load_lora_state, select_device

    start = time.perf_counter()
    adapter.check_output(opts.out, opts.force)
    train_sets = [read_gold_dir(d) for d in opts.gold_dirs]
    dev_set = read_gold_dir(opts.dev_dir) if opts.dev_dir else None
    device = select_device(opts.device)
    torch.manual_seed(opts.seed)  # LoRA init (A) and dropout
    enc = load_trainable(opts.model, opts.layer, opts.threshold, opts.r, opts.alpha, opts.dropout, device)
    tokenizer, arch = enc.loaded.tokenizer, enc.loaded.arch.name
    train = [_examples(tokenizer, s, arch, enc.max_tokens, opts) for s in train_sets]
    parallel_sets = _parallel_sets(tokenizer, arch, enc.max_tokens, opts)
    train += [p.examples for p in parallel_sets]
    dev = _examples(tokenizer, dev_set, arch, enc.max_tokens, opts) if dev_set else None
    params = [p for p in enc.peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    rng = random.Random(opts.seed)
    history = [{"epoch": 0, **_dev_entry(enc, dev, dev_set, tokenizer, device)}]
    best_epoch, best = 0, lora_state(enc.peft_model)
    for epoch in range(1, opts.epochs + 1):
        entry = _train_epoch(enc, train, opts, optimizer, rng, tokenizer.pad_token_id, device, epoch)
        entry.update(_dev_entry(enc, dev, dev_set, tokenizer, device))
        history.append(entry)
        if dev is None or entry["dev"]["aer"] < history[best_epoch]["dev"]["aer"]:
            best_epoch, best = epoch, lora_state(enc.peft_model)
        if dev is not None and opts.progress:
            print(f"epoch {epoch}: dev AER {entry['dev']['aer']:.4f} (before training "
                  f"{history[0]['dev']['aer']:.4f})", file=sys.stderr)
    load_lora_state(enc.peft_model, best)
    seconds = time.perf_counter() - start
    info = _info(opts, enc, device, train_sets, parallel_sets, dev_set, history, best_epoch, seconds)
    adapter.write_adapter(enc.peft_model, opts.out, info, _base_model(enc.loaded.source))
    return FinetuneResult(opts.out, best_epoch, tuple(history), seconds, info)


def _examples(tokenizer, gold: GoldSet, arch: str, max_tokens: int, opts: FinetuneOptions) -> list:
    from transalign.train.matrices import build_example

    src_lang, tgt_lang = _gold_languages(tokenizer, gold, arch, opts)
    out = []
    for pair in gold.pairs:
        example = build_example(tokenizer, pair, src_lang, tgt_lang, opts.links, f"{gold.path}:{pair.line}")
        longest = max(len(example.src.ids), len(example.tgt.ids))
        if longest > max_tokens:
            raise TrainError(f"{gold.path}, pair {pair.line}: {longest} tokens but the model takes at most "
                             f"{max_tokens}; remove or split that pair")
        out.append(example)
    return out


def _parallel_sets(tokenizer, arch: str, max_tokens: int, opts: FinetuneOptions) -> list:
    from transalign.train.parallel import read_parallel_set

    if not opts.parallel:
        return []
    if arch != "m2m100" and (opts.src_lang or opts.tgt_lang):
        print(f"transalign finetune: --src-lang/--tgt-lang ignored: {arch} models take no language codes",
              file=sys.stderr)
    src_lang = _language(tokenizer, arch, "--src-lang", opts.src_lang, "the source language of --parallel files")
    tgt_lang = _language(tokenizer, arch, "--tgt-lang", opts.tgt_lang, "the target language of --parallel files")
    return [read_parallel_set(path, tokenizer, src_lang, tgt_lang, max_tokens) for path in opts.parallel]


def _base_model(source: str) -> str:
    """What the adapter records as its base model: a local directory as an absolute path (a
    relative one would name another folder from wherever the adapter is used), a hub id as is."""
    from pathlib import Path

    return str(Path(source).resolve()) if Path(source).is_dir() else source


def _gold_languages(tokenizer, gold: GoldSet, arch: str, opts: FinetuneOptions):
    """A gold set's codes: --src-lang / --tgt-lang when given, else its meta.json's."""
    where = f"{gold.path / 'meta.json'}"
    src = _language(tokenizer, arch, "--src-lang" if opts.src_lang else f"{where}: src_lang",
                    opts.src_lang or gold.src_lang, "src_lang (in meta.json, or pass --src-lang)")
    tgt = _language(tokenizer, arch, "--tgt-lang" if opts.tgt_lang else f"{where}: tgt_lang",
                    opts.tgt_lang or gold.tgt_lang, "tgt_lang (in meta.json, or pass --tgt-lang)")
    return src, tgt


def _language(tokenizer, arch: str, name: str, code: str | None, what: str) -> str | None:
    """NLLB needs a language code it knows, by the engine's rule (`engine.options`: a bare ISO
    639-3 code with one script is read as that code; a two-letter code gets what to write);
    BERT-family models use none (``None``)."""
    from transalign.engine.options import LanguageError, canonical_language

    if arch != "m2m100":
        return None
    known = list(getattr(tokenizer, "additional_special_tokens", None) or [])
    if code is None:
        raise TrainError(f"{name}: NLLB needs {what} as an NLLB language code such as eng_Latn")
    if not known:
        return code
    try:
        return canonical_language(known, "src_lang" if "src" in name else "tgt_lang", code, arch)
    except LanguageError as exc:
        raise TrainError(exc.named(name)) from None


def _train_epoch(enc, sets, opts, optimizer, rng, pad_id, device, epoch) -> dict:
    import torch

    from transalign.train.batches import epoch_batches
    from transalign.train.dev import hidden_pairs
    from transalign.train.objective import pair_loss, self_training_loss

    batches = epoch_batches(sets, opts.batch_size, rng)
    self_threshold = enc.threshold if opts.self_threshold is None else opts.self_threshold
    bar = _bar(len(batches), f"epoch {epoch}/{opts.epochs}", opts.progress)
    enc.module.train()
    total, pairs, started = 0.0, 0, time.perf_counter()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        for (x, y), example in zip(hidden_pairs(enc.module, batch, pad_id, device), batch):
            if example.gold is None:  # parallel text: the model's own alignment is the target
                loss = loss + self_training_loss(x, y, self_threshold, opts.objective)
            else:
                loss = loss + pair_loss(x, y, torch.from_numpy(example.gold).to(device), opts.objective)
        loss.backward()
        optimizer.step()
        total, pairs = total + float(loss.detach()), pairs + len(batch)
        if bar is not None:
            bar.set_postfix(loss=f"{total / pairs:.4f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    enc.module.eval()
    return {"epoch": epoch, "train_loss_per_pair": total / pairs, "steps": len(batches),
            "seconds": round(time.perf_counter() - started, 2)}


def _bar(total: int, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="batch", file=sys.stderr, dynamic_ncols=True)


def _dev_entry(enc, dev, dev_set, tokenizer, device) -> dict:
    if dev is None:
        return {}
    from transalign.train.dev import dev_scores

    scores = dev_scores(enc.module, dev, dev_set.pairs, enc.threshold, tokenizer.pad_token_id, device)
    fields = ("aer", "precision", "recall", "f1", "predicted")
    return {"dev": {k: getattr(scores["reference"], k) for k in fields},
            "dev_argmax": {k: getattr(scores["argmax"], k) for k in fields}}


def _info(opts, enc, device, train_sets, parallel_sets, dev_set, history, best_epoch, seconds) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
                if k not in ("progress", "force", "out")}
    settings["gold_dirs"] = [str(d) for d in opts.gold_dirs]
    settings["parallel"] = [str(p) for p in opts.parallel]
    settings.update(layer=enc.layer, threshold=enc.threshold, device=device,
                    self_threshold=(enc.threshold if opts.self_threshold is None else opts.self_threshold)
                    if opts.parallel else None,
                    lora_targets=list(enc.peft_model.peft_config["default"].target_modules))
    return {"format": "transalign-finetune", "version": 1, "base_model": enc.loaded.source,
            "architecture": enc.loaded.arch.name, "settings": settings,
            "train_pairs": {str(s.path): len(s) for s in train_sets},
            "parallel": [p.record() for p in parallel_sets],
            "dev_pairs": len(dev_set) if dev_set else 0, "history": list(history),
            "best_epoch": best_epoch, "seconds": round(seconds, 2)}
