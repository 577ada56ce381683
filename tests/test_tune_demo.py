"""The demo's tuning step (tools/demo.py `ensure_default`) on the tiny bundle: it stores exactly
what `transalign tune --first 500 --write` stores, and a bundle that carries a tuned default is
left alone (no second tuning on every `make demo`)."""

from __future__ import annotations

import json
import shutil

from transalign.cli import main
from transalign.engine.bundle import MANIFEST_NAME

LANGS = ("ces_Latn", "eng_Latn")


def test_demo_tunes_like_the_cli_and_only_once(tiny_bundle, tmp_path, capsys):
    from tools import demo

    by_demo, by_cli = tmp_path / "demo", tmp_path / "cli"
    shutil.copytree(tiny_bundle, by_demo)
    shutil.copytree(tiny_bundle, by_cli)
    demo.ensure_default(by_demo, retune=False)
    assert main(["tune", str(by_cli), "--gold-dir", str(demo.GOLD), "--first", str(demo.TUNE_PAIRS), "--write",
                 "--src-lang", LANGS[0], "--tgt-lang", LANGS[1], "--precision", demo.TUNE_GRAPH]) == 0
    stored = json.loads((by_demo / MANIFEST_NAME).read_text())
    assert stored == json.loads((by_cli / MANIFEST_NAME).read_text())
    assert stored["default_tuning"]["pairs"] == f"1-{demo.TUNE_PAIRS}" and stored["default_tuning"]["gold"] == "csen"

    (by_demo / MANIFEST_NAME).write_text(json.dumps({**stored, "default_tuning": {**stored["default_tuning"],
                                                                                   "marker": "kept"}}))
    capsys.readouterr()
    demo.ensure_default(by_demo, retune=False)
    assert json.loads((by_demo / MANIFEST_NAME).read_text())["default_tuning"]["marker"] == "kept"
    assert "tuned on csen pairs 1-500" in capsys.readouterr().out
