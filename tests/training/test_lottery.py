import json

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import MaskSet, effective_weight, raw_parameter
from prunekit.training import OptimizerConfig, TrainConfig
from prunekit.training import lottery as lottery_module
from prunekit.training.lottery import LotteryConfig, random_masks_like, rewind, run_lottery

from tests.training.helpers import Batches, blobs


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 4))


def _data():
    x, y = blobs(n=384)
    return Batches(x[:256], y[:256], 32), Batches(x[256:320], y[256:320], 64, shuffle=False), Batches(x[320:], y[320:], 64, shuffle=False)


def _config(**kw) -> LotteryConfig:
    base = dict(rounds=2, rate=0.5, rate_overrides={"4.weight": 0.25}, train=TrainConfig(epochs=2, optimizer=OptimizerConfig(name="adam", lr=0.01)))
    return LotteryConfig(**{**base, **kw})


def test_rewind_gives_back_exactly_the_initial_weights_under_the_mask():
    torch.manual_seed(0)
    model = _mlp()
    names = ["0.weight", "2.weight", "4.weight"]
    MaskSet.ones(model, names).attach(model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "training" moves every weight
        for p in model.parameters():
            p.add_(1.0)
    masks = MaskSet({n: torch.rand(raw_parameter(model, n).shape) > 0.6 for n in names})
    rewind(model, init, masks)
    for n in names:
        original = init[n.replace("weight", "parametrizations.weight.original")]
        assert torch.equal(effective_weight(model, n), original * masks[n])
        assert torch.equal(raw_parameter(model, n), original)
    assert torch.equal(model[0].bias, init["0.bias"])


def test_random_mask_control_has_the_same_per_layer_counts():
    masks = MaskSet({"a": torch.rand(30, 20) > 0.8, "b": torch.rand(7) > 0.3})
    shuffled = random_masks_like(masks, torch.Generator().manual_seed(1))
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {n: int(m.sum()) for n, m in masks.items()}
    assert not shuffled["a"].equal(masks["a"])


def test_per_round_rates_and_config_validation():
    config = _config(rounds=3)
    assert config.pruning_config(2).sparsity == pytest.approx(0.75)
    assert config.pruning_config(2).overrides == {"4.weight": pytest.approx(1 - 0.75**2)}
    with pytest.raises(ValidationError, match="rate"):
        LotteryConfig(rate=1.0)
    with pytest.raises(ValidationError, match="controls"):
        LotteryConfig(controls=("random_everything",))


def test_run_lottery_tickets_and_controls_then_resume(tmp_path, monkeypatch):
    train, val, test = _data()
    config = _config(controls=("random_reinit", "random_mask"))
    records = run_lottery(_mlp, train, val, test, config, tmp_path)
    assert [(r.round, r.kind) for r in records] == [
        (0, "ticket"), (1, "ticket"), (1, "random_reinit"), (1, "random_mask"), (2, "ticket"), (2, "random_reinit"), (2, "random_mask"),
    ]
    n0, n2, n4 = 16 * 24, 24 * 12, 12 * 4
    for r in records:
        kept = {"0.weight": round(n0 * 0.5**r.round), "2.weight": round(n2 * 0.5**r.round), "4.weight": round(n4 * 0.75**r.round)}
        assert r.layer_remaining == {n: pytest.approx(k / {"0.weight": n0, "2.weight": n2, "4.weight": n4}[n]) for n, k in kept.items()}
        assert r.weights_remaining == pytest.approx(sum(kept.values()) / (n0 + n2 + n4))
        assert 0.0 <= r.test_accuracy <= 1.0 and r.early_stop_step in (8, 16)
    assert records[0].test_accuracy > 0.9
    # the ticket of round 2 is a subset of round 1's, and the random-mask control really used other masks
    m1, m2 = MaskSet.load(tmp_path / "round_01/masks.safetensors"), MaskSet.load(tmp_path / "round_02/masks.safetensors")
    assert all(torch.equal(m2[n] & m1[n], m2[n]) for n in m2)
    assert json.loads((tmp_path / "round_02/random_mask.json").read_text())["kind"] == "random_mask"

    monkeypatch.setattr(lottery_module, "fit", lambda *a, **k: pytest.fail("a finished round was trained again"))
    assert run_lottery(_mlp, train, val, test, config, tmp_path) == records


def test_rewinding_to_iteration_k(tmp_path):
    train, val, test = _data()
    run_lottery(_mlp, train, val, test, _config(rounds=1, rewind_step=3), tmp_path)
    rewound = lottery_module.load_safetensors(tmp_path / "rewind.safetensors")
    torch.manual_seed(0)
    init = _mlp()
    assert not torch.equal(rewound["0.parametrizations.weight.original"], init[0].weight.detach())
    with pytest.raises(ConfigError, match="never reached"):
        run_lottery(_mlp, train, val, test, _config(rounds=1, rewind_step=10_000), tmp_path / "late")


def test_each_round_trains_the_reset_ticket_and_the_controls_it_should(tmp_path, monkeypatch):
    trained = {}

    def fake_fit(model, *args, description="", **kwargs):  # records what would be trained; "training" changes the weights
        trained[description] = (MaskSet.from_model(model), {k: v.clone() for k, v in model.state_dict().items()})
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-2.0)

    monkeypatch.setattr(lottery_module, "fit", fake_fit)
    train, val, test = _data()
    run_lottery(_mlp, train, val, test, _config(rounds=1, controls=("random_reinit", "random_mask")), tmp_path)
    init_masks, init = trained["lottery round 0 ticket"]
    ticket_masks, ticket = trained["lottery round 1 ticket"]
    reinit_masks, reinit = trained["lottery round 1 random_reinit"]
    shuffled_masks, shuffled = trained["lottery round 1 random_mask"]
    assert init_masks.kept() == init_masks.numel() and ticket_masks.sparsity() > 0
    key = "0.parametrizations.weight.original"
    assert torch.equal(ticket[key], init[key]), "ticket is reset to the initialisation"
    assert reinit_masks.equal(ticket_masks) and not torch.equal(reinit[key], init[key])
    assert torch.equal(shuffled[key], init[key]) and not shuffled_masks.equal(ticket_masks)
    assert {n: int(m.sum()) for n, m in shuffled_masks.items()} == {n: int(m.sum()) for n, m in ticket_masks.items()}


@pytest.mark.parametrize("damaged", ["round_01/ticket.json", "round_01/ticket.safetensors", "round_02/masks.safetensors",
                                     "round_00/masks.safetensors", "rewind.safetensors", "round_02/random_reinit.json"])
def test_a_damaged_lottery_file_is_reported_and_made_again(tmp_path, caplog, damaged):
    train, val, test = _data()
    config = _config(controls=("random_reinit",))
    records = run_lottery(_mlp, train, val, test, config, tmp_path)
    ticket = (tmp_path / "round_02" / "ticket.safetensors").read_bytes()
    path = tmp_path / damaged
    path.write_bytes(b"\xff garbage" if path.suffix == ".json" else path.read_bytes()[:-50])
    assert run_lottery(_mlp, train, val, test, config, tmp_path) == records
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and str(path) in r.getMessage()]
    assert (tmp_path / "round_02" / "ticket.safetensors").read_bytes() == ticket


def test_a_damaged_rewind_point_of_a_trained_round_0_is_a_clear_error(tmp_path):
    from prunekit.errors import DamagedFileError

    train, val, test = _data()
    config = _config(rounds=1, rewind_step=3)
    run_lottery(_mlp, train, val, test, config, tmp_path)
    (tmp_path / "round_01" / "ticket.json").unlink()
    (tmp_path / "rewind.safetensors").write_bytes(b"garbage")
    with pytest.raises(DamagedFileError, match=r"rewind.safetensors is damaged .*saved at step 3 of round 0, so the experiment must start over"):
        run_lottery(_mlp, train, val, test, config, tmp_path)
