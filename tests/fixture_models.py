"""Tiny models built locally for tests: never downloaded, cached between runs.

`build_tiny_nllb(dir)` trains a small sentencepiece model on tests/data/corpus.txt, wraps it as
a Hugging Face NLLB tokenizer (slow + fast, with the 202 NLLB language codes), builds a random
M2M100 with a matching vocabulary and saves both as a checkpoint directory. `build_tiny_lora`
makes a PEFT LoRA adapter on that model's *encoder* (keys relative to the encoder, exactly like
the authors' adapter) with non-zero B so merging it changes the weights.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus.txt"
TINY_MAX_POSITIONS = 256
TINY_CONFIG = dict(
    d_model=32,
    encoder_layers=3,
    decoder_layers=1,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=TINY_MAX_POSITIONS,
    scale_embedding=True,
    activation_function="relu",
    dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    decoder_start_token_id=2,
)


def cache_key(*extra: str) -> str:
    """A key that changes when this file or the corpus changes, so stale fixtures are rebuilt."""
    digest = hashlib.sha256(Path(__file__).read_bytes() + CORPUS.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]


def cached_dir(root: Path, name: str, build) -> Path:
    """Build into a temp dir and rename into place, so an interrupted build is never reused."""
    target = root / name
    if (target / ".complete").exists():
        return target
    tmp = root / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def train_sentencepiece(out_prefix: Path, vocab_size: int = 800) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(CORPUS),
        model_prefix=str(out_prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=0.9995,
        normalization_rule_name="nmt_nfkc",
        byte_fallback=False,
        num_threads=1,
        minloglevel=2,
    )
    return out_prefix.with_suffix(".model")


def build_tiny_nllb(out: Path, seed: int = 0) -> None:
    """Checkpoint dir with config, weights, sentencepiece.bpe.model, tokenizer.json."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer, NllbTokenizerFast

    spm_path = train_sentencepiece(out / "spm")
    vocab = out / "sentencepiece.bpe.model"
    shutil.move(spm_path, vocab)
    (out / "spm.vocab").unlink()
    slow = NllbTokenizer(vocab_file=str(vocab))
    slow.save_pretrained(out)
    fast = NllbTokenizerFast.from_pretrained(out, from_slow=True)
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = M2M100Config(vocab_size=len(slow), **TINY_CONFIG)
    model = M2M100ForConditionalGeneration(config).eval()
    model.save_pretrained(out)


def build_tiny_lora(model_dir: Path, out: Path, seed: int = 1, r: int = 4, alpha: int = 16) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import M2M100ForConditionalGeneration

    model = M2M100ForConditionalGeneration.from_pretrained(model_dir)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["fc1", "fc2"], lora_dropout=0.0,
                        init_lora_weights=False, task_type="FEATURE_EXTRACTION")
    torch.manual_seed(seed)
    peft_model = get_peft_model(model.get_encoder(), config)
    with torch.no_grad():  # make the update large enough that a missed merge is visible
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.3)
    peft_model.save_pretrained(out)
