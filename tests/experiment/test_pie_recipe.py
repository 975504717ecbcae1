"""A run writes its PIE examples (pie.json, thumbnails in the report) and takes finetune.augment."""

import json

import pytest

from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.training import AugmentConfig

from tests.experiment.recipes import tiny_recipe


@pytest.mark.slow  # a whole tiny run: about 25 s alone, 100 s on the shared 2-core machine
def test_run_saves_pie_examples_and_retrains_augmented(tmp_path) -> None:
    recipe = load_recipe(tiny_recipe(baselines=[], sparsity=0.97, schedule={"name": "iterative", "rate": 0.9, "final_sparsity": 0.97}),
                         ["prune.finetune.augment.corruptions=[noise]", "prune.finetune.augment.p=1.0", "evaluate.latency=false"])
    assert recipe.prune.finetune.augment == AugmentConfig(corruptions=("noise",), p=1.0)
    assert recipe.train.augment is None  # the dense training is left alone
    run = run_recipe(recipe, tmp_path, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    pie = json.loads((run / "pie.json").read_text())
    assert summary["pie"]["count"] == pie["count"] == len(pie["examples"]) > 0
    assert summary["pie"]["shown"] == pie["examples"][:32]
    for e in pie["examples"]:
        assert e["dense"] == e["label"] and e["pruned"] != [e["label"]]
    assert (run / "plots" / "pie_examples.png").read_bytes().startswith(b"\x89PNG")
    assert "<img class='pie' alt='PIE examples'" in (run / "report.html").read_text()
