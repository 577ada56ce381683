"""Self-training on parallel text (issue 28, `finetune --parallel`) on tiny fixtures.

Truths used here are independent of transalign.train: the self-training target and loss restated
as double loops over S (numpy, float64); the first step's loss recomputed through peft's model
(tests/reference.py) and those loops; AER of the written adapter from its definition; sha256 with
hashlib; the skipped rows listed by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fine-tuning needs the train extra")
pytest.importorskip("peft", reason="fine-tuning needs the train extra")

from reference import embed_words, load_reference_encoder  # noqa: E402
from test_finetune import (NLLB_LANGS, NLLB_LAYER, _aer_on, _csen_lines, _tokenizer, make_gold_dir,  # noqa: E402
                           one_thread)  # noqa: F401 (an autouse fixture: one torch thread here too)

from transalign.train.batches import epoch_batches  # noqa: E402
from transalign.train.gold import TrainError  # noqa: E402
from transalign.train.objective import self_training_loss, self_training_target, similarity_loss  # noqa: E402

FAST = dict(batch_size=4, lr=1e-2, dropout=0.0, progress=False, layer=NLLB_LAYER)


def naive_target(sim: np.ndarray, t: float) -> np.ndarray:
    """Â[i, j] = 1 iff exp(S_ij) / Σ_k exp(S_ik) > t and exp(S_ij) / Σ_k exp(S_kj) > t, cell by cell."""
    n, m = sim.shape
    out = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            row = sum(math.exp(sim[i, k] - sim[i, j]) for k in range(m))  # = 1 / F_ij, overflow-safe
            col = sum(math.exp(sim[k, j] - sim[i, j]) for k in range(n))
            out[i, j] = float(1 / row > t and 1 / col > t)
    return out


def naive_symmetric_loss(sim: np.ndarray, target: np.ndarray) -> float:
    n, m = sim.shape
    total = 0.0
    for i in range(n):
        for j in range(m):
            f = 1 / sum(math.exp(sim[i, k] - sim[i, j]) for k in range(m))
            b = 1 / sum(math.exp(sim[k, j] - sim[i, j]) for k in range(n))
            total -= 0.5 * target[i, j] * (f / n + b / m)
    return total


@pytest.mark.parametrize("n, m, scale, t", [(1, 1, 1.0, 0.001), (3, 5, 1.0, 0.001), (6, 2, 3.0, 0.1),
                                            (5, 5, 40.0, 0.001), (4, 7, 0.01, 0.3), (4, 4, 1.0, 0.999)])
def test_self_training_target_and_loss_match_the_loops(n, m, scale, t):
    gen = torch.Generator().manual_seed(n * 100 + m)
    x = (scale * torch.randn(n, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randn(m, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    sim = x @ y.T
    want = naive_target(sim.detach().numpy(), t)
    got = self_training_target(sim, t)
    assert not got.requires_grad and got.dtype == sim.dtype
    np.testing.assert_array_equal(got.numpy(), want)
    loss = self_training_loss(x, y, t, "symmetric")
    assert math.isclose(float(loss.detach()), naive_symmetric_loss(sim.detach().numpy(), want), rel_tol=1e-9, abs_tol=1e-12)
    # no gradient through the target: the same as the objective against a constant Â
    constant = torch.from_numpy(want)
    for objective in ("symmetric", "authors"):
        grads = torch.autograd.grad(self_training_loss(x, y, t, objective), (x, y))
        expected = torch.autograd.grad(similarity_loss(x @ y.T, constant, objective), (x, y))
        assert all(torch.allclose(a, b) for a, b in zip(grads, expected))
    if t == 0.999:  # nothing passes: no target, no loss, no gradient
        assert want.sum() == 0 and float(loss.detach()) == 0.0


def test_ties_and_constant_rows():
    sim = torch.zeros(3, 4, dtype=torch.float64)  # F = 1/4, B = 1/3 everywhere
    assert self_training_target(sim, 0.25).sum() == 0  # strictly above t, as the aligner
    assert self_training_target(sim, 0.2).sum() == 12
    np.testing.assert_array_equal(self_training_target(sim, 0.2).numpy(), naive_target(sim.numpy(), 0.2))


def test_batches_never_mix_sets_and_use_every_pair_once():
    import random

    sets = [[("gold", k) for k in range(10)], [("par-a", k) for k in range(7)], [("par-b", k) for k in range(3)]]
    for seed in range(5):
        batches = epoch_batches(sets, 4, random.Random(seed))
        assert all(len({source for source, _ in batch}) == 1 for batch in batches)
        assert sorted(x for batch in batches for x in batch) == sorted(x for s in sets for x in s)
        assert len(batches) == 3 + 2 + 1


def _parallel_file(path: Path, start: int, stop: int, extra: list[str] = ()) -> Path:
    lines = _csen_lines(start, stop)
    rows = [f"{s} ||| {t}" for s, t in zip(lines["src.txt"], lines["tgt.txt"])]
    path.write_text("".join(r + "\n" for r in [*rows, *extra]), encoding="utf-8")
    return path


def test_first_step_loss_is_the_models_own_alignment_objective(tiny_nllb, tmp_path):
    """One batch holding every pair = one step, whose loss is computed before the update: it must
    equal the self-training loss of the untrained model, recomputed through peft's model and the
    loops above (tokenization, layer, target and objective all checked at once)."""
    from transalign.train import finetune

    path = _parallel_file(tmp_path / "p.txt", 0, 6)
    result = finetune(str(tiny_nllb), [], tmp_path / "out", parallel=[path], epochs=1,
                      **{**FAST, "batch_size": 6}, **NLLB_LANGS)
    tokenizer, encoder = _tokenizer(tiny_nllb), load_reference_encoder(tiny_nllb)
    lines, want = _csen_lines(0, 6), 0.0
    for src, tgt in zip(lines["src.txt"], lines["tgt.txt"]):
        x, _ = embed_words(tokenizer, encoder, src.split(), NLLB_LANGS["src_lang"], NLLB_LAYER)
        y, _ = embed_words(tokenizer, encoder, tgt.split(), NLLB_LANGS["tgt_lang"], NLLB_LAYER)
        sim = x.astype(np.float64) @ y.astype(np.float64).T
        want += naive_symmetric_loss(sim, naive_target(sim, 0.001))
    [epoch] = result.history[1:]
    assert epoch["steps"] == 1
    assert epoch["train_loss_per_pair"] == pytest.approx(want / 6, rel=1e-5)
    assert result.info["settings"]["self_threshold"] == 0.001  # NLLB's reference threshold


def test_skipped_rows_are_counted_and_logged_with_file_and_line(tiny_nllb, tmp_path, capsys):
    from transalign.train import finetune

    long_side = " ".join(["slovo"] * 600)  # beyond the tiny model's positions
    path = _parallel_file(tmp_path / "p.txt", 0, 5, ["", "only one side", "a ||| b ||| c", " ||| x",
                                                       f"{long_side} ||| y"])
    with path.open("ab") as handle:
        handle.write(b"caf\xe9 ||| cafe\n")
    result = finetune(str(tiny_nllb), [], tmp_path / "out", parallel=[path], epochs=1, **FAST, **NLLB_LANGS)
    err = capsys.readouterr().err
    for line in (6, 7, 8, 9, 10, 11):
        assert f"skipped {path}:{line}: " in err
    assert f"{path}:10: too long: the source side is" in err
    [record] = result.info["parallel"]
    assert record == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                      "rows_used": 5, "rows_skipped": 6,
                      "skipped_by_reason": {"empty": 2, "invalid UTF-8": 1, "malformed": 2, "too long": 1}}
    written = json.loads((tmp_path / "out" / "training.json").read_text())
    assert written["parallel"] == [record] and written["settings"]["parallel"] == [str(path)]


def test_mixed_gold_and_parallel_keep_the_best_epoch_and_repeat_with_a_seed(tiny_nllb, tmp_path):
    from transalign.train import finetune

    gold = make_gold_dir(tmp_path / "gold", _csen_lines(0, 8), NLLB_LANGS)
    dev = make_gold_dir(tmp_path / "dev", _csen_lines(40, 48), NLLB_LANGS)
    path = _parallel_file(tmp_path / "p.txt", 8, 20)
    runs = {}
    for name, seed in (("a", 3), ("b", 3)):
        result = finetune(str(tiny_nllb), [gold], tmp_path / name, parallel=[path], dev_dir=dev, epochs=3,
                          seed=seed, **{**FAST, "dropout": 0.1}, **NLLB_LANGS)
        runs[name] = result
    a, b = runs["a"], runs["b"]
    assert [e.get("train_loss_per_pair") for e in a.history] == [e.get("train_loss_per_pair") for e in b.history]
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "b" / "adapter_model.safetensors").read_bytes()
    assert all(e["steps"] == 2 + 3 for e in a.history[1:])  # 8 gold pairs and 12 parallel ones, 4 a batch
    assert a.info["train_pairs"] == {str(gold): 8} and a.info["parallel"][0]["rows_used"] == 12
    aers = [e["dev"]["aer"] for e in a.history]
    assert a.best_epoch == int(np.argmin(aers))
    threshold = a.info["settings"]["threshold"]
    assert _aer_on(tiny_nllb, tmp_path / "a", dev, NLLB_LAYER, NLLB_LANGS, threshold) == \
        pytest.approx(aers[a.best_epoch], abs=1e-9)


def test_self_trained_adapter_exports(tiny_nllb, tmp_path):
    """The user's workflow (docs/fine-tuning.md): self-train on the corpus to align, export with the
    adapter, then align the corpus with align-corpus; its shards are the new bundle's links."""
    from safetensors.torch import load_file

    from transalign import Aligner

    from transalign.cli import main

    path = _parallel_file(tmp_path / "p.txt", 0, 8)
    out, bundle = tmp_path / "adapter", tmp_path / "bundle"
    assert main(["finetune", str(tiny_nllb), "--parallel", str(path), "--src-lang", "ces_Latn", "--tgt-lang",
                 "eng_Latn", "--layer", str(NLLB_LAYER), "--epochs", "1", "--batch-size", "4", "--lr", "1e-2",
                 "--self-threshold", "0.05", "--no-progress", "-o", str(out)]) == 0
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert max(float(v.abs().max()) for k, v in tensors.items() if "lora_B" in k) > 0, "nothing was trained"
    assert json.loads((out / "training.json").read_text())["settings"]["self_threshold"] == 0.05
    assert main(["export", str(tiny_nllb), "--lora", str(out), "--layer", str(NLLB_LAYER), "--precision", "fp32",
                 "-o", str(bundle)]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["lora"]["merged_modules"] == len(tensors) // 2
    aligned = tmp_path / "aligned"
    assert main(["align-corpus", str(bundle), str(path), "-o", str(aligned), "--src-lang", "ces_Latn",
                 "--tgt-lang", "eng_Latn", "--quiet"]) == 0
    rows = [line.split(" ||| ") for line in path.read_text(encoding="utf-8").splitlines()]
    results = Aligner.load(bundle, provider="cpu").align([s for s, _ in rows], [t for _, t in rows], "ces_Latn",
                                                         "eng_Latn")
    shards = "".join(p.read_text(encoding="utf-8") for p in sorted(aligned.glob("part-*.txt")))
    assert shards == "".join(r.pharaoh() + "\n" for r in results) and len(results) == 8


@pytest.mark.parametrize("args, message", [
    ([], "nothing to train on"),
    (["--parallel", "{tmp}/missing.txt", "--src-lang", "ces_Latn", "--tgt-lang", "eng_Latn"],
     "--parallel {tmp}/missing.txt: file not found"),
    (["--parallel", "{tmp}/p.txt", "--tgt-lang", "eng_Latn"], "--src-lang: NLLB needs the source language"),
    (["--parallel", "{tmp}/p.txt", "--src-lang", "cs", "--tgt-lang", "eng_Latn"], "--src-lang 'cs': unknown language code; two-letter"),
    (["--parallel", "{tmp}/bad.txt", "--src-lang", "ces_Latn", "--tgt-lang", "eng_Latn"],
     "no usable sentence pair (2 rows skipped)"),
    (["--parallel", "{tmp}/p.txt", "--self-threshold", "1.5"], "self_threshold 1.5 must be a number in [0, 1)"),
])
def test_cli_errors_are_clear(tiny_nllb, tmp_path, capsys, args, message):
    from transalign.cli import main

    _parallel_file(tmp_path / "p.txt", 0, 2)
    (tmp_path / "bad.txt").write_text("no separator\n\t\n", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["finetune", str(tiny_nllb), *args, "--layer", str(NLLB_LAYER), "--no-progress",
                 "-o", str(tmp_path / "out")])
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gold_set_without_meta_takes_the_language_flags(tiny_nllb, tmp_path):
    from transalign.train import finetune

    gold = make_gold_dir(tmp_path / "gold", _csen_lines(0, 4))  # no meta.json
    with pytest.raises(TrainError, match="NLLB needs src_lang"):
        finetune(str(tiny_nllb), [gold], tmp_path / "o1", epochs=1, **FAST)
    result = finetune(str(tiny_nllb), [gold], tmp_path / "o2", epochs=1, **FAST, **NLLB_LANGS)
    assert result.info["train_pairs"] == {str(gold): 4}


def test_parallel_text_from_stdin(tiny_nllb, monkeypatch, capsys):
    import io
    import sys

    from transalign.train.parallel import read_parallel_set

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("a b ||| x\nbroken\nc\td e\n".encode())))
    result = read_parallel_set(Path("-"), _tokenizer(tiny_nllb), "ces_Latn", "eng_Latn", 512)
    assert result.record() == {"path": "-", "sha256": None, "rows_used": 2, "rows_skipped": 1,
                               "skipped_by_reason": {"malformed": 1}}
    assert [e.source for e in result.examples] == ["-:1", "-:3"]
    assert "skipped -:2: no separator" in capsys.readouterr().err


def test_training_languages_follow_the_engine_rule():
    """Fine-tuning's codes go through engine.options: a bare ISO 639-3 code is read as the model's
    one code for it, a two-letter ISO 639-1 code (the shipped csen meta.json's `cs`) gets what to write."""
    from types import SimpleNamespace

    from transalign.train.loop import TrainError, _language

    tokenizer = SimpleNamespace(additional_special_tokens=["ces_Latn", "eng_Latn", "zho_Hans", "zho_Hant"])
    assert _language(tokenizer, "m2m100", "--src-lang", "ces", "src") == "ces_Latn"
    assert _language(tokenizer, "m2m100", "--tgt-lang", "eng_Latn", "tgt") == "eng_Latn"
    with pytest.raises(TrainError, match=r"meta.json: src_lang 'cs': unknown language code.*ISO 639-3 code"):
        _language(tokenizer, "m2m100", "data/gold/csen/meta.json: src_lang", "cs", "src_lang")
    with pytest.raises(TrainError, match=r"--tgt-lang 'zho': unknown language code; closest: zho_Han[st], zho_Han[st]"):
        _language(tokenizer, "m2m100", "--tgt-lang", "zho", "tgt")
    assert _language(tokenizer, "bert", "--src-lang", "cs", "src") is None


def test_finetune_prints_a_line_per_epoch_json_on_request_and_records_an_absolute_base(tiny_nllb, tmp_path,
                                                                                        capsys, monkeypatch):
    """Issue 26.5: a human summary (JSON with --json), and the adapter's base model recorded as an
    absolute path when it was given as a relative one (a relative path names another folder from
    wherever the adapter is used later)."""
    from transalign.cli import main

    path = _parallel_file(tmp_path / "p.txt", 0, 4)
    monkeypatch.chdir(tiny_nllb.parent)
    common = ["finetune", tiny_nllb.name, "--parallel", str(path), "--src-lang", "ces_Latn", "--tgt-lang",
              "eng_Latn", "--layer", str(NLLB_LAYER), "--epochs", "1", "--batch-size", "4", "--no-progress"]
    assert main([*common, "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "epoch 0:" in out and "epoch 1:" in out and "wrote adapter" in out and "{" not in out
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_nllb.resolve())
    assert main([*common, "--json", "-o", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("parallel ")  # the per-file line, then the JSON history
    history = json.loads(printed[printed.index("\n") + 1:])
    assert [entry["epoch"] for entry in history] == [0, 1]
