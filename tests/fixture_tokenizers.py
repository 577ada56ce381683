"""Tiny BERT-family tokenizers built locally for tests: never downloaded, cached between runs.

`build_tiny_bert(dir)` trains a WordPiece on tests/data/corpus.txt with BERT's normalizer,
pre-tokenizer and ``[CLS] $A [SEP]`` template and saves it as a ``BertTokenizerFast`` (cased,
like mBERT and LaBSE). `build_tiny_xlmr(dir)` trains a sentencepiece *unigram* model (nmt_nfkc)
and converts it the way transformers converts XLM-R: ``XLMRobertaTokenizer`` ->
``XLMRobertaTokenizerFast`` (Precompiled normalizer, Metaspace, Unigram, ``<s> $A </s>``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fixture_models import CORPUS, cache_key, cached_dir

FIXTURE_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "fixtures"
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_cache_key() -> str:
    """`cache_key` extended with this file, so editing a builder rebuilds its fixture."""
    return cache_key(hashlib.sha256(Path(__file__).read_bytes()).hexdigest())


def tiny_tokenizer_dir(name: str) -> Path:
    """The cached directory of fixture `name` ("bert" or "xlmr"), built on first use."""
    builders = {"bert": build_tiny_bert, "xlmr": build_tiny_xlmr}
    return cached_dir(FIXTURE_CACHE, f"tiny-{name}-tok-{tokenizer_cache_key()}", builders[name])


def build_tiny_bert(out: Path, vocab_size: int = 1500) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train([str(CORPUS)], trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=False, strip_accents=None,
                             tokenize_chinese_chars=True)
    fast.save_pretrained(out)


def build_tiny_xlmr(out: Path, vocab_size: int = 1000) -> None:
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    spm.SentencePieceTrainer.train(
        input=str(CORPUS), model_prefix=str(out / "spm"), vocab_size=vocab_size, model_type="unigram",
        character_coverage=0.9995, normalization_rule_name="nmt_nfkc", num_threads=1, minloglevel=2)
    vocab = out / "sentencepiece.bpe.model"  # XLM-R's file name, although the model is unigram
    (out / "spm.model").rename(vocab)
    (out / "spm.vocab").unlink()
    XLMRobertaTokenizer(vocab_file=str(vocab)).save_pretrained(out)
    XLMRobertaTokenizerFast.from_pretrained(out, from_slow=True).save_pretrained(out)


def build_keep_whitespace_nllb(nllb_dir: Path, out: Path) -> None:
    """`nllb_dir`'s tokenizer with the normalizer/pre-tokenizer of older transformers converters
    (the style of NLLB tokenizer.json files on the Hub): no Strip(right), runs of spaces -> " ",
    Metaspace(add_prefix_space=True). Words with trailing whitespace then end in a "▁" token."""
    import json
    import shutil

    for name in ("sentencepiece.bpe.model", "special_tokens_map.json"):
        shutil.copyfile(nllb_dir / name, out / name)
    tokenizer_config = json.loads((nllb_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.pop("from_slow", None)  # else transformers ignores tokenizer.json and converts again
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, ensure_ascii=False), encoding="utf-8")
    config = json.loads((nllb_dir / "tokenizer.json").read_text(encoding="utf-8"))
    precompiled = config["normalizer"]["normalizers"][0]
    assert precompiled["type"] == "Precompiled", config["normalizer"]
    config["normalizer"] = {"type": "Sequence", "normalizers": [
        precompiled, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    config["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    (out / "tokenizer.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
