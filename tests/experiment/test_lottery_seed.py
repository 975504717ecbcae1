"""``method: lottery`` seeds its initialisation from ``prune.seed`` if set, else from the recipe's ``seed``."""

import pytest

from prunekit.experiment.methods.lottery import lottery_config
from prunekit.experiment.recipe import load_recipe


@pytest.mark.parametrize(("overrides", "seed"), [([], 0), (["seed=2"], 2), (["seed=2", "prune.seed=5"], 5), (["prune.seed=7"], 7)])
def test_the_recipe_seed_reaches_the_lottery_rounds_unless_prune_seed_is_set(overrides, seed):
    recipe = load_recipe("lottery_lenet300", overrides)
    config = lottery_config(recipe)
    assert config.seed == seed
    assert (config.rounds, config.rate, config.rate_overrides, config.controls) == (15, 0.2, {"fc3.weight": 0.1}, ("random_reinit", "random_mask"))
    assert config.train == recipe.train


def test_the_conv2_recipe_prunes_convs_and_the_output_layer_at_half_the_fc_rate():
    config = lottery_config(load_recipe("lottery_conv2", []))
    assert (config.rate, config.rounds, config.controls) == (0.2, 20, ("random_reinit",))
    assert config.rate_overrides == {"features.0.weight": 0.1, "features.2.weight": 0.1, "classifier.4.weight": 0.1}
    assert (config.train.optimizer.name, config.train.optimizer.lr, config.train.epochs) == ("adam", 0.0002, 27)
