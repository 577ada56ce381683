"""Tiny BERT-family checkpoints built locally for tests: never downloaded, cached between runs.

`build_tiny_bert(dir)` saves the cased WordPiece tokenizer of tests/fixture_tokenizers.py (the
mBERT/LaBSE kind) with a random ``BertModel`` of matching vocabulary. `build_tiny_xlmr(dir)` does
the same with its sentencepiece-unigram XLM-R tokenizer (``<s>=0 <pad>=1 </s>=2 <unk>=3``; the
multilingual-e5 kind) and a random ``XLMRobertaModel``, whose positions start at pad_token_id + 1.
`build_tiny_bert_lora(model_dir, out)` makes a PEFT LoRA on the *whole* model with the
authors' LaBSE/mBERT targets (``intermediate.dense``, ``output.dense``; keys
``base_model.model.encoder.layer.N...``), with non-zero B so a missed merge is visible.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fixture_models import cache_key
from fixture_tokenizers import build_tiny_bert as build_bert_tokenizer
from fixture_tokenizers import build_tiny_xlmr as build_xlmr_tokenizer

BERT_LAYERS = 8  # >= every family's reference layer (mBERT 8, LaBSE 6, e5 6): defaults stay in range
XLMR_LAYERS = 6
BERT_MAX_POSITIONS = 128  # BERT positions start at 0: the table has exactly this many rows
XLMR_MAX_POSITIONS = 100  # tokens, specials included (the table has 100 + pad_token_id + 1 rows);
# the export validation batch needs about 85 with these tiny vocabularies
_COMMON = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, type_vocab_size=2)


def bert_cache_key() -> str:
    """Changes with this file, the tokenizer builders and the corpus: stale fixtures are rebuilt."""
    here = Path(__file__).parent
    text = b"".join((here / name).read_bytes() for name in ("fixture_bert.py", "fixture_tokenizers.py"))
    return cache_key(hashlib.sha256(text).hexdigest())


def build_tiny_bert(out: Path, seed: int = 0) -> None:
    """Checkpoint dir: config.json, model.safetensors, tokenizer.json (+ configs), vocab.txt."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    build_bert_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), num_hidden_layers=BERT_LAYERS,
                        max_position_embeddings=BERT_MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id, **_COMMON)
    BertModel(config).eval().save_pretrained(out)


def build_tiny_xlmr(out: Path, seed: int = 0) -> None:
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    build_xlmr_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), num_hidden_layers=XLMR_LAYERS, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2,
                              max_position_embeddings=XLMR_MAX_POSITIONS + 1 + 1, **_COMMON)
    XLMRobertaModel(config).eval().save_pretrained(out)


def build_tiny_bert_lora(model_dir: Path, out: Path, seed: int = 1, r: int = 4, alpha: int = 16) -> None:
    """PEFT LoRA on the whole BertModel/XLMRobertaModel, targets like the authors' LaBSE adapter.

    ``output.dense`` matches both ``layer.N.output.dense`` and ``layer.N.attention.output.dense``,
    exactly as in PEFT's suffix matching for the released adapters.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["intermediate.dense", "output.dense"],
                        lora_dropout=0.0, init_lora_weights=False, task_type="FEATURE_EXTRACTION")
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.3)
    peft_model.save_pretrained(out)
