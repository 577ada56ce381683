"""LoRA merge with the authors' real adapters: W' == W + (alpha/r) B @ A, nothing else changes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from transalign.export.errors import ExportError
from transalign.export.lora import load_adapter, merge_adapter


def expected_deltas(adapter_dir, prefix="base_model.model."):
    """Independent restatement: read the file, pair A/B by name, scale by alpha/r from the config."""
    import json

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    deltas = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            b = tensors[key.replace("lora_A", "lora_B")]
            module = key[len(prefix):-len(".lora_A.weight")]
            deltas[module + ".weight"] = scale * (b.double() @ a.double())
    return deltas


def check_merge(model, adapter_dir, root_name, expected_count):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deltas = expected_deltas(adapter_dir)
    assert len(deltas) * 2 == expected_count
    assert merge_adapter([(root_name, model)], load_adapter(adapter_dir)) == root_name
    after = model.state_dict()
    for name, old in before.items():
        if name in deltas:
            want = (old.double() + deltas[name]).float()
            assert torch.equal(after[name], want), name
            if deltas[name].abs().max() > 0:
                assert not torch.equal(after[name], old), f"{name} did not change"
        else:
            assert torch.equal(after[name], old), f"{name} changed but is not targeted"


@pytest.mark.slow
def test_real_nllb_adapter_on_full_size_encoder(data_dir):
    from benchmarks.full_size import random_encoder

    encoder, _ = random_encoder(seed=3)
    adapter = data_dir / "reference" / "transalign-lora-nllb-600m"
    check_merge(encoder, adapter, "encoder", expected_count=48)
    del encoder


@pytest.mark.parametrize("name", ["LaBSE", "bert-base-multilingual-cased"])
def test_real_bert_adapters_on_bert_base_shape(data_dir, name):
    """target 'output.dense' also matches 'attention.output.dense': 3 modules x 12 layers x A/B."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072)
    model = BertModel(config, add_pooling_layer=False).eval()
    adapter = data_dir / "reference" / f"transalign-lora-{name}"
    check_merge(model, adapter, "model", expected_count=72)
    # Blocks at and above the alignment layer (LaBSE 6, mBERT 8) got no gradient in training:
    # their B stayed at its zero init, so the merge leaves them unchanged, as it should.
    layer = {"LaBSE": 6, "bert-base-multilingual-cased": 8}[name]
    untrained = {m for m, d in expected_deltas(adapter).items() if d.abs().max() == 0}
    assert untrained == {f"encoder.layer.{n}.{part}.weight" for n in range(layer, 12)
                         for part in ("attention.output.dense", "intermediate.dense", "output.dense")}


def test_bert_adapter_on_wrong_size_is_refused(data_dir):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=100, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=1536)
    model = BertModel(config, add_pooling_layer=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ExportError, match="does not fit this model"):
        merge_adapter([("model", model)], load_adapter(data_dir / "reference" / "transalign-lora-LaBSE"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
