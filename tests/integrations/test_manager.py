"""RecipeManager: a recipe's prune section in a plain PyTorch loop (gradual, N:M, DST, structured; resume; validation)."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.experiment.recipe import load_recipe
from prunekit.integrations import RecipeManager
from prunekit.masks import MaskSet

from .helpers import batches, convnet, train

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
GRADUAL = {"method": "gradual", "scope": "layer", "schedule": {
    "name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 4, "frequency": 2}}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}


def test_gradual_reaches_exact_layer_sparsity_and_finish_folds_the_masks() -> None:
    model = convnet()
    manager = RecipeManager.from_recipe({"prune": GRADUAL}, model)
    assert manager.sparsity() == 0.0
    train(model, manager, batches(6))
    masks = MaskSet.from_model(model)
    assert {n: int((~m).sum()) for n, m in masks.items()} == {n: math.floor(0.5 * m.numel() + 0.5) for n, m in masks.items()}
    manager.finish()
    assert not MaskSet.from_model(model)
    assert {n: int((w == 0).sum()) for n, w in _weights(model).items()} == {n: int((~masks[n]).sum()) for n in masks}


def test_unstructured_rounds_prune_at_evenly_spread_steps() -> None:
    model = convnet()
    section = {"method": "unstructured", "scope": "layer", "schedule": {"name": "iterative", "rate": 0.5, "final_sparsity": 0.75}}
    manager = RecipeManager.from_recipe(section, model, steps_per_epoch=2, epochs=2)  # rounds at steps 0 and 2 of 4
    masks = MaskSet.from_model(model)
    assert {n: int((~m).sum()) for n, m in masks.items()} == {n: math.floor(0.5 * m.numel() + 0.5) for n, m in masks.items()}
    train(model, manager, batches(2))
    assert manager.state_dict()["pruning"] == {"done": 2}
    masks = MaskSet.from_model(model)
    assert {n: int((~m).sum()) for n, m in masks.items()} == {n: math.floor(0.75 * m.numel() + 0.5) for n, m in masks.items()}


def test_nm_pattern_holds_through_training() -> None:
    model = convnet()
    manager = RecipeManager.from_recipe({"method": "nm", "n": 2, "m": 4, "permute": False, "include": ["3.weight", "8.weight"]}, model)
    train(model, manager, batches(4))
    model = manager.finish()
    for name in ("3.weight", "8.weight"):
        w = dict(model.named_parameters())[name].detach()
        groups = w.movedim(1, -1).reshape(-1, 4)
        assert ((groups != 0).sum(1) <= 2).all(), name


def test_rigl_keeps_sparsity_while_masks_move() -> None:
    model = convnet()
    section = {"method": "dst", "algorithm": "rigl", "sparsity": 0.75, "distribution": "uniform", "delta_t": 2, "alpha": 0.5}
    manager = RecipeManager.from_recipe(section, model, total_steps=8)
    start = MaskSet.from_model(model)
    train(model, manager, batches(8))
    end = MaskSet.from_model(model)
    assert start.kept() == end.kept() == round(0.25 * start.numel())
    assert not start.equal(end)
    assert manager.state_dict()["pruning"] == {"updates": 2}  # steps 2 and 4 (< end_step 6)


def test_structured_masks_then_removes_channels_with_equal_outputs() -> None:
    model = convnet()
    section = {"method": "structured", "ratio": 0.5, "steps": 2, "importance": "l1", "round_to": 1}
    manager = RecipeManager.from_recipe(section, model, total_steps=4, example_inputs=X)
    assert manager.state_dict()["pruning"]["done"] == 1  # step 0: half the target
    train(model, manager, batches(4))
    assert manager.state_dict()["pruning"]["done"] == 2
    model.eval()
    with torch.no_grad():
        masked = model(X)
    pruned = manager.finish()
    assert pruned is model and not MaskSet.from_model(model)
    assert [m.out_channels for m in model if isinstance(m, nn.Conv2d)] == [4, 4]
    assert model[8].in_features == 4
    with torch.no_grad():
        torch.testing.assert_close(model(X), masked, rtol=1e-5, atol=1e-6)


def test_resume_from_state_dicts_gives_the_masks_of_an_uninterrupted_run() -> None:
    section = {"method": "dst", "algorithm": "set", "sparsity": 0.5, "delta_t": 2}
    data = batches(8)
    model = convnet()
    full = RecipeManager.from_recipe(section, model, total_steps=8)
    train(model, full, data)
    expected = MaskSet.from_model(model)

    first = convnet()
    manager = RecipeManager.from_recipe(section, first, total_steps=8)
    optimizer = train(first, manager, data[:3])
    saved = copy.deepcopy({"model": first.state_dict(), "optimizer": optimizer.state_dict(), "pruning": manager.state_dict()})

    resumed = convnet(seed=1)  # different init: everything comes from the saved state
    manager = RecipeManager.from_recipe(section, resumed, total_steps=8)
    resumed.load_state_dict(saved["model"])
    optimizer = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    optimizer.load_state_dict(saved["optimizer"])
    manager.load_state_dict(saved["pruning"])
    train(resumed, manager, data[3:], optimizer)
    assert MaskSet.from_model(resumed).equal(expected)


def test_from_recipe_reads_the_prune_section_of_a_recipe_file(tmp_path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: mine\nmodel: {name: lenet_300_100}\ndata: {name: mnist}\nprune:\n  method: nm\n  n: 1\n  m: 4\n  permute: false\n")
    model = convnet()
    RecipeManager.from_recipe(path, model)
    assert MaskSet.from_model(model).sparsity() == pytest.approx(0.75)


@pytest.mark.parametrize(("source", "message"), [
    ({"method": "lottery"}, "prune.method 'lottery' cannot run in your own loop; supported: unstructured, gradual, nm, dst, structured"),
    ({"method": "nm", "n": 4, "m": 4}, "the given recipe: invalid prune section: prune: n must be smaller than m (got 4:4)"),
    ({"method": "gradual", "frequncy": 3}, "prune.frequncy: Extra inputs are not permitted"),
    ({"name": "x"}, "has no prune section"),
])
def test_invalid_sections_name_the_setting(source, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        RecipeManager.from_recipe(source, convnet())


def test_a_shipped_recipe_or_a_recipe_object_gives_its_section() -> None:
    with pytest.raises(ConfigError, match=r"prune.permute searches channel permutations on a traced model: pass example_inputs="):
        RecipeManager.from_recipe("nm_resnet20", convnet())
    recipe = load_recipe({"name": "r", "model": {"name": "lenet_300_100"}, "data": {"name": "mnist"}, "prune": GRADUAL})
    manager = RecipeManager.from_recipe(recipe, convnet())
    assert manager.section == recipe.prune


def test_settings_the_loop_cannot_honour_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"dst \(end_fraction of training\) needs the length of training: pass steps_per_epoch"):
        RecipeManager.from_recipe({"method": "dst", "sparsity": 0.5}, convnet())
    with pytest.raises(ConfigError, match="prune.stop needs the recipe runner"):
        RecipeManager.from_recipe({"method": "structured", "ratio": 0.5, "stop": {"max_accuracy_drop": 1.0}}, convnet(), example_inputs=X)
    manager = RecipeManager.from_recipe({"prune": GRADUAL}, convnet())
    manager.finish()
    with pytest.raises(ConfigError, match="has finished"):
        manager.step()
