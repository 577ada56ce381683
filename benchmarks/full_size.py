"""The full-size NLLB-200-distilled-600M encoder with random weights, for speed and memory work.

The real weights cannot be downloaded here. Random weights time exactly like real ones (same
shapes, same kernels); a small init std keeps activations in range. The tokenizer is a
stand-in: a sentencepiece BPE model trained on the benchmark texts (realistic subwords per word)
wrapped as an NLLB tokenizer, so its ids occupy the low part of the 256k vocabulary.

    python -m benchmarks.full_size -o benchmarks/work/nllb-600m-random

writes a bare-encoder checkpoint (config.json with architectures ["M2M100Encoder"],
model.safetensors, tokenizer files) that `transalign export` accepts like a real checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from transalign.formats.text import read_sentences

NLLB_600M = dict(
    vocab_size=256206,
    d_model=1024,
    encoder_layers=12,
    decoder_layers=12,
    encoder_attention_heads=16,
    decoder_attention_heads=16,
    encoder_ffn_dim=4096,
    decoder_ffn_dim=4096,
    max_position_embeddings=1024,
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
BAM = Path(__file__).resolve().parents[1] / "data" / "reference" / "bam-sample"


def random_encoder(seed: int = 0, std: float = 0.02):
    """M2M100Encoder of NLLB-600M shape, N(0, std) weights (std 0.02 keeps activations sane)."""
    import torch
    from transformers import M2M100Config
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

    config = M2M100Config(**NLLB_600M, init_std=std)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    encoder = M2M100Encoder(config).eval()
    return encoder, config


def train_standin_tokenizer(out: Path, vocab_size: int = 4000) -> None:
    """sentencepiece BPE on the bam sample (Bambara + English) wrapped as an NLLB tokenizer."""
    import sentencepiece as spm
    from transformers import NllbTokenizer, NllbTokenizerFast

    texts = [" ".join(s) for name in ("test-bam.txt", "test-translate-bam-en-preds.txt")
             for s in read_sentences(BAM / name, "conll")]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(Path(tmp) / "spm"),
                                       vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
                                       normalization_rule_name="nmt_nfkc", num_threads=2, minloglevel=2)
        shutil.copy(Path(tmp) / "spm.model", out / "sentencepiece.bpe.model")
    NllbTokenizer(vocab_file=str(out / "sentencepiece.bpe.model")).save_pretrained(out)
    NllbTokenizerFast.from_pretrained(out, from_slow=True).save_pretrained(out)


def build_checkpoint(out: Path, seed: int = 0, std: float = 0.02) -> Path:
    """Write the bare-encoder checkpoint atomically; reuse it when already complete."""
    if (out / ".complete").exists():
        return out
    return save_checkpoint(*random_encoder(seed, std), out)  # no reference kept here: save frees it early


def save_checkpoint(encoder, config, out: Path) -> Path:
    """A bare M2M100 encoder and the stand-in tokenizer as a checkpoint directory, written into a
    hidden staging directory renamed into place last (``.complete`` marks it whole)."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        config.architectures = ["M2M100Encoder"]
        config.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in encoder.state_dict().items() if "embed_positions" not in k}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del encoder, state
        train_standin_tokenizer(tmp)
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/work/nllb-600m-random"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--std", type=float, default=0.02)
    args = parser.parse_args()
    print(build_checkpoint(args.output, args.seed, args.std))


if __name__ == "__main__":
    main()
