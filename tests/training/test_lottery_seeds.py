"""Lottery tickets over seeds: the seed sets the initialisation, reruns repeat it, interrupted runs resume per cell,
and ``seed_spread`` aggregates the per-seed curves."""

import pytest
import torch

from prunekit.masks import MaskSet
from prunekit.training import OptimizerConfig, TrainConfig
from prunekit.training import lottery as lottery_module
from prunekit.training.lottery import LotteryConfig, run_lottery, seed_spread

from tests.training.test_lottery import _data, _mlp


def _config(**kw) -> LotteryConfig:
    base = dict(rounds=1, rate=0.5, controls=("random_reinit",), train=TrainConfig(epochs=1, optimizer=OptimizerConfig(name="adam", lr=0.01)))
    return LotteryConfig(**{**base, **kw})


def test_the_seed_changes_the_initialisation_and_a_rerun_with_the_same_seed_repeats_it(tmp_path):
    train, val, test = _data()
    config = _config(controls=(), train=TrainConfig(epochs=1, max_steps=3, optimizer=OptimizerConfig(name="adam", lr=0.01)))
    runs = {name: run_lottery(_mlp, train, val, test, config.model_copy(update={"seed": seed}), tmp_path / name)
            for name, seed in [("a1", 1), ("b1", 1), ("a2", 2)]}
    init = {name: lottery_module.load_safetensors(tmp_path / name / "rewind.safetensors") for name in runs}
    key = "0.parametrizations.weight.original"
    assert torch.equal(init["a1"][key], init["b1"][key]) and not torch.equal(init["a1"][key], init["a2"][key])
    assert runs["a1"] == runs["b1"]  # identical records (accuracies, early-stop steps) for the same seed
    masks = {name: MaskSet.load(tmp_path / name / "round_01/masks.safetensors") for name in runs}
    assert masks["a1"].equal(masks["b1"]) and not masks["a1"].equal(masks["a2"])


def test_an_interrupted_run_resumes_without_retraining_finished_cells(tmp_path, monkeypatch):
    trained: list[str] = []

    def fake_fit(model, *args, description="", **kwargs):
        if description == "lottery round 2 random_reinit" and "interrupt" not in trained:
            trained.append("interrupt")
            raise KeyboardInterrupt
        trained.append(description)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-1.5)

    monkeypatch.setattr(lottery_module, "fit", fake_fit)
    train, val, test = _data()
    config = _config(rounds=3)
    with pytest.raises(KeyboardInterrupt):
        run_lottery(_mlp, train, val, test, config, tmp_path)
    first = [d for d in trained if d != "interrupt"]
    assert first == ["lottery round 0 ticket", "lottery round 1 ticket", "lottery round 1 random_reinit", "lottery round 2 ticket"]
    trained.clear()
    trained.append("interrupt")  # no more interruptions
    records = run_lottery(_mlp, train, val, test, config, tmp_path)
    assert trained[1:] == ["lottery round 2 random_reinit", "lottery round 3 ticket", "lottery round 3 random_reinit"]
    assert [(r.round, r.kind) for r in records] == [(0, "ticket"), (1, "ticket"), (1, "random_reinit"), (2, "ticket"),
                                                   (2, "random_reinit"), (3, "ticket"), (3, "random_reinit")]


def test_seed_spread_gives_mean_and_sample_std_per_method_and_round():
    def curve(*accs):
        return [{"method": m, "round": r, "fraction_remaining": f, "accuracy": a}
                for (m, r, f), a in zip([("ticket", 0, 1.0), ("ticket", 1, 0.5), ("random_reinit", 1, 0.5)], accs)]

    spread = seed_spread([curve(0.90, 0.92, 0.80), curve(0.94, 0.96, 0.84), curve(0.92, 0.91)])
    assert [(r["method"], r["round"], r["seeds"]) for r in spread] == [("ticket", 0, 3), ("random_reinit", 1, 2), ("ticket", 1, 3)]
    dense, reinit, ticket = spread
    assert dense["accuracy"] == pytest.approx(0.92) and dense["accuracy_std"] == pytest.approx(0.02)
    assert ticket["accuracies"] == [0.92, 0.96, 0.91] and ticket["accuracy"] == pytest.approx(0.93)
    assert ticket["accuracy_std"] == pytest.approx(((0.01**2 + 0.03**2 + 0.02**2) / 2) ** 0.5)
    assert reinit["accuracy"] == pytest.approx(0.82) and reinit["accuracy_std"] == pytest.approx((2 * 0.02**2) ** 0.5)
    assert ticket["fraction_remaining"] == 0.5
    assert seed_spread([curve(0.9)])[0]["accuracy_std"] == 0.0
