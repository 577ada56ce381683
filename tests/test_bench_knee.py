"""The knee of a token-budget sweep (transalign/bench/knee.py), `--batch-tokens sweep`, and the
knee in `transalign bench`'s report.

The knee rule is checked on curves built so that the answer is known by construction (a ramp
that saturates at a chosen budget, points placed exactly on and just under the tolerance line,
ties, dips), and against a brute-force reading of the rule on random curves. The bench run's
knee is recomputed from the raw pass timings its JSON stores.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics

import numpy as np
import pytest

from transalign.bench.defaults import SWEEP, SWEEP_BATCH_TOKENS
from transalign.bench.knee import KNEE_TOLERANCE, Knee, describe, find_knee, knee_rule, knees_by
from transalign.cli import main

BUDGETS = (512, 1024, 2048, 4096, 8192)


def naive_knee(curve: dict[int, float], tolerance: float) -> int:
    """The rule read literally: walk the budgets upward, stop at the first within tolerance of the best."""
    best = max(curve.values())
    for budget in sorted(curve):
        if curve[budget] >= (1 - tolerance) * best:
            return budget
    raise AssertionError("the best itself is within tolerance")


@pytest.mark.parametrize("saturates_at", BUDGETS)
def test_a_ramp_that_saturates_has_its_knee_where_it_flattens(saturates_at):
    """rate = min(budget, saturation): below saturation each budget gives half the next one's
    rate, far outside 5%, so the knee is the saturation budget by construction."""
    curve = {b: float(min(b, saturates_at)) for b in BUDGETS}
    knee = find_knee(curve)
    assert knee.batch_tokens == saturates_at and knee.rate == knee.best_rate == saturates_at
    assert knee.best_batch_tokens == saturates_at  # the plateau's equal rates: the smallest is the best
    assert knee.budgets == BUDGETS and knee.share_of_best == 1.0


def test_the_tolerance_line_is_inclusive_and_just_below_it_is_not_the_knee():
    best = 1000.0
    on_line = (1 - KNEE_TOLERANCE) * best  # the same expression the rule evaluates
    below = np.nextafter(on_line, 0.0)
    assert find_knee({1024: on_line, 2048: best}).batch_tokens == 1024
    assert find_knee({1024: float(below), 2048: best}).batch_tokens == 2048


def test_a_larger_tolerance_moves_the_knee_down_and_zero_picks_the_best():
    curve = {b: 100.0 * (1 - 0.04 * k) for k, b in enumerate(reversed(BUDGETS))}  # 4% less per halving
    assert find_knee(curve, 0.0).batch_tokens == BUDGETS[-1]
    for steps in range(len(BUDGETS)):  # a tolerance just above `steps` halvings' loss reaches that far down
        tolerance = 0.04 * steps + 0.005
        assert find_knee(curve, tolerance).batch_tokens == BUDGETS[-1 - steps]


def test_ties_go_to_the_smallest_budget():
    knee = find_knee({b: 7.0 for b in BUDGETS})
    assert knee.batch_tokens == knee.best_batch_tokens == BUDGETS[0] and knee.edge == "smallest"
    knee = find_knee({512: 1.0, 1024: 9.0, 2048: 3.0, 4096: 9.0})
    assert knee.best_batch_tokens == 1024 and knee.batch_tokens == 1024 and knee.edge is None


def test_non_monotone_curves_follow_the_rule_not_the_shape():
    # a dip between two equally fast ends: the smallest budget already gives the best
    assert find_knee({512: 10.0, 1024: 5.0, 2048: 10.0}).batch_tokens == 512
    # the best in the middle, a drop after it: the knee is never above the best
    knee = find_knee({512: 5.0, 1024: 9.0, 2048: 10.0, 4096: 6.0})
    assert (knee.batch_tokens, knee.best_batch_tokens, knee.edge) == (2048, 2048, None)
    # noise within the tolerance below the best: the first budget inside the band
    knee = find_knee({512: 5.0, 1024: 9.6, 2048: 9.7, 4096: 10.0})
    assert (knee.batch_tokens, knee.best_batch_tokens) == (1024, 4096)


def test_one_budget_or_none_has_no_knee():
    assert find_knee({}) is None and find_knee({2048: 12.5}) is None


def test_the_knee_does_not_depend_on_the_order_of_the_measurements():
    rng = np.random.default_rng(11)
    rates = rng.uniform(1, 10, len(BUDGETS)).tolist()
    forward = find_knee(dict(zip(BUDGETS, rates)))
    backward = find_knee(dict(zip(reversed(BUDGETS), reversed(rates))))
    assert forward == backward


def test_random_curves_agree_with_the_rule_read_literally():
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(2, 8))
        budgets = sorted(rng.choice(np.arange(1, 70000), n, replace=False).tolist())
        rates = rng.choice([1.0, 2.0, 2.5, 3.0], n) if rng.random() < 0.3 else rng.uniform(0.5, 20, n)  # ties too
        curve = {int(b): float(r) for b, r in zip(budgets, rates)}
        tolerance = float(rng.choice([0.0, 0.01, KNEE_TOLERANCE, 0.2, 0.6]))
        knee = find_knee(curve, tolerance)
        assert knee.batch_tokens == naive_knee(curve, tolerance)
        assert knee.best_rate == max(curve.values()) and curve[knee.best_batch_tokens] == knee.best_rate
        assert knee.batch_tokens <= knee.best_batch_tokens and knee.rate == curve[knee.batch_tokens]
        assert knee.edge == {budgets[0]: "smallest", budgets[-1]: "largest"}.get(knee.batch_tokens)
        assert Knee.from_dict(json.loads(json.dumps(knee.to_dict()))) == knee


@pytest.mark.parametrize(("curve", "tolerance", "message"), [
    ({512: 1.0, 1024: 2.0}, 1.0, "tolerance must be in [0, 1)"),
    ({512: 1.0, 1024: 2.0}, -0.1, "tolerance must be in [0, 1)"),
    ({512: 0.0, 1024: 2.0}, 0.05, "at 512 tokens must be a finite positive number"),
    ({512: float("nan"), 1024: 2.0}, 0.05, "at 512 tokens must be a finite positive number"),
    ({512: float("inf"), 1024: 2.0}, 0.05, "finite positive"),
    ({0: 1.0, 1024: 2.0}, 0.05, "positive integers, got 0"),
    ({512.5: 1.0, 1024: 2.0}, 0.05, "positive integers, got 512.5"),
])
def test_bad_curves_are_errors(curve, tolerance, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        find_knee(curve, tolerance)


def test_groups_get_their_own_knee_and_a_repeated_budget_is_an_error():
    rows = [{"g": g, "b": b, "r": float(min(b, sat))} for g, sat in (("a", 1024), ("b", 4096)) for b in BUDGETS]
    rows.append({"g": "c", "b": 2048, "r": 3.0})
    found = knees_by(rows, lambda r: r["g"], lambda r: r["b"], lambda r: r["r"])
    assert list(found) == ["a", "b", "c"] and found["c"] is None
    assert (found["a"].batch_tokens, found["b"].batch_tokens) == (1024, 4096)
    with pytest.raises(ValueError, match="two measurements of 2048 tokens in group 'c'"):
        knees_by(rows + [rows[-1]], lambda r: r["g"], lambda r: r["b"], lambda r: r["r"])


def test_the_rule_and_the_description_say_what_was_decided():
    assert "smallest token budget" in knee_rule() and f"{KNEE_TOLERANCE:.0%}" in knee_rule()
    assert f"{1 - KNEE_TOLERANCE:.2f} x best" in knee_rule()
    low = describe(find_knee({b: 1.0 for b in BUDGETS}))
    assert low.startswith("knee 512 tokens (100.0% of the best") and "smaller ones may do as well" in low
    high = describe(find_knee({b: float(b) for b in BUDGETS}))
    assert high.startswith("knee 8192 tokens") and "larger ones may do better" in high


# -- the sweep ------------------------------------------------------------------------------------


def test_the_sweep_brackets_each_providers_default_within_the_engines_limit():
    from transalign.engine.defaults import DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS
    from transalign.engine.session import PROVIDERS

    assert set(SWEEP_BATCH_TOKENS) == set(PROVIDERS)
    for provider, budgets in SWEEP_BATCH_TOKENS.items():
        assert list(budgets) == sorted(set(budgets)) and len(budgets) >= 3
        assert 1 <= budgets[0] < DEFAULT_BATCH_TOKENS[provider] < budgets[-1] <= MAX_BATCH_TOKENS


def test_sweep_expands_per_provider_and_a_list_stays_a_list():
    from transalign.bench.runner import BenchOptions, plan_variants

    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # no --provider: every available one
    sweep = plan_variants(BenchOptions("b", precisions=("fp32",), batch_tokens=SWEEP), {"fp32"}, available)
    assert [(v["provider"], v["batch_tokens"]) for v in sweep] == \
        [(p, b) for p in ("cpu", "cuda") for b in SWEEP_BATCH_TOKENS[p]]
    listed = plan_variants(BenchOptions("b", precisions=("fp32",), providers=("cpu",), batch_tokens=(300, 900)),
                           {"fp32"}, available)
    assert [v["batch_tokens"] for v in listed] == [300, 900]
    with pytest.raises(ValueError, match="--batch-tokens 'sweeps'"):
        BenchOptions("b", batch_tokens="sweeps")


def test_the_command_line_hands_sweep_to_the_runner(tiny_bundle, monkeypatch, capsys):
    from transalign.bench import runner

    seen = {}

    def fake_run_bench(options, log):
        seen["options"] = options
        raise ValueError("stop before measuring")

    monkeypatch.setattr(runner, "run_bench", fake_run_bench)
    assert main(["bench", str(tiny_bundle), "--batch-tokens", "sweep"]) == 2
    assert seen["options"].batch_tokens == SWEEP and "stop before measuring" in capsys.readouterr().err
    assert main(["bench", str(tiny_bundle), "--batch-tokens", "256,512"]) == 2
    assert seen["options"].batch_tokens == (256, 512)


@pytest.mark.parametrize(("value", "message"), [
    ("sweep,1024", "argument --batch-tokens: 'sweep,1024': 'sweep' stands alone"),
    ("swep", "argument --batch-tokens: 'swep' is neither a comma-separated list of integers nor 'sweep'"),
    ("1024,x", "argument --batch-tokens: '1024,x' is neither"),
])
def test_bad_budget_words_name_the_flag(tiny_bundle, capsys, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(tiny_bundle), "--batch-tokens", value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


# -- the knee in a real bench run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_budget_run(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-knee") / "bench.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bench", str(tiny_bundle), "--synthetic", "24", "--precision", "fp32", "--provider", "cpu",
                     "--threads", "1", "--batch-tokens", "128,512", "--repeat", "3", "--latency-pairs", "0",
                     "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), stdout.getvalue()


def test_the_report_names_the_knee_recomputed_from_the_raw_passes(two_budget_run):
    results, stdout = two_budget_run
    curve = {}
    for v in results["variants"]:
        runs = v["raw"]["runs"]
        curve[v["batch_tokens"]] = runs[0]["pairs"] / statistics.median(r["e2e"] for r in runs)
    expected = naive_knee(curve, KNEE_TOLERANCE)
    (knee,) = results["knees"]
    assert (knee["provider"], knee["precision"], knee["threads"]) == ("cpu", "fp32", 1)
    assert knee["batch_tokens"] == expected and knee["budgets"] == [128, 512]
    assert knee["best_rate"] == pytest.approx(max(curve.values()))
    assert knee["rate"] == pytest.approx(curve[expected]) and knee["tolerance"] == KNEE_TOLERANCE
    assert results["knee_rule"] == knee_rule() and knee_rule() in stdout
    assert f"- cpu fp32, 1 threads: knee {expected} tokens" in stdout
    rates = [[v["raw"]["runs"][0]["pairs"] / r["e2e"] for r in v["raw"]["runs"]] for v in results["variants"]]
    spread = max((max(r) - min(r)) / statistics.median(r) for r in rates)
    assert knee["pass_spread"] == pytest.approx(spread)
    assert ("noisy: the passes of one budget differ" in stdout) == (spread > KNEE_TOLERANCE)


def test_a_noisy_group_is_flagged_and_a_steady_one_is_not():
    from transalign.bench.report import _knee_lines, knees

    def variant(budget, median, low, high):
        return {"provider": "cpu", "precision": "int8", "threads": None, "batch_tokens": budget,
                "pairs_per_s": {"median": median, "min": low, "max": high}}

    steady = knees([variant(512, 50.0, 49.0, 51.0), variant(1024, 100.0, 99.0, 101.0)])
    noisy = knees([variant(512, 50.0, 49.0, 51.0), variant(1024, 100.0, 80.0, 120.0)])
    assert steady[0]["pass_spread"] == pytest.approx(0.04) and noisy[0]["pass_spread"] == pytest.approx(0.4)
    assert steady[0]["batch_tokens"] == noisy[0]["batch_tokens"] == 1024
    lines = {name: "\n".join(_knee_lines({"knee_rule": knee_rule(), "knees": k}))
             for name, k in (("steady", steady), ("noisy", noisy))}
    assert "noisy" not in lines["steady"] and "differ by up to 40% of its median" in lines["noisy"]
    assert "- cpu int8, all threads: knee 1024 tokens" in lines["steady"]


def test_one_budget_reports_no_knee(tiny_bundle, tmp_path):
    out = tmp_path / "one.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["bench", str(tiny_bundle), "--synthetic", "8", "--precision", "fp32", "--provider", "cpu",
                     "--threads", "1", "--repeat", "1", "--latency-pairs", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["knees"] == [] and "knee" not in stdout.getvalue()
