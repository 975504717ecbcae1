"""Fast fuzzing of recipe validation through ``prunekit run``, in-process (default suite).

Hypothesis draws 300 invalid-by-construction mutations of the shipped recipes, 20 per mutator
(:mod:`tests.fuzz.recipe_mutations`), and runs each through typer's ``CliRunner`` in a fresh sandbox
(cwd, HOME, caches and TMPDIR inside it). Every case must exit 2 or 3 with a short message naming
the field, no traceback, nothing written, without reaching the runner's data loading, within
15 s (over 2 s is only a warning: timings are noisy under ``pytest -n 2``). The soak (``python -m tests.fuzz.soak``) runs thousands through the real entry point.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Outcome, errors, excerpt, problems, run_in_process
from tests.fuzz.recipe_mutations import MUTATORS, DrawChooser, Generator, Mutation, RandomChooser, names_field

#: in-process a bomb's repr cannot be interrupted, so cap it at 9**7 leaves (the soak goes to 9**9)
BOMB_LEVELS = 7
#: 15 mutators x 20 = 300 cases, every kind of mutation covered (hypothesis alone favours the first options)
EXAMPLES_PER_MUTATOR = 20


#: nesting from 3001 to this (the soak goes to 6000)
MAX_DEPTH = 4000
#: in-process limit per case: generous, since the sibling xdist worker competes for the 2 cores (the
#: soak's 5 s limit, one process per case, is the hang criterion)
TIMEOUT_S = 15.0


@functools.cache
def generator() -> Generator:
    return Generator(max_bomb_levels=BOMB_LEVELS, max_depth=MAX_DEPTH)


def explain(mutation: Mutation, outcome: Outcome, found: list[str]) -> str:
    lines = [f"[{mutation.kind}] {mutation.base}: {mutation.description}",
             f"problems: {found}; exit code {outcome.exit_code}; {outcome.elapsed:.2f} s; field {mutation.field!r}, line {mutation.line}",
             f"--set: {[a[:120] for a in mutation.set_args]}"]
    if outcome.exception:
        lines.append(f"uncaught: {outcome.exception}")
    if outcome.writes:
        lines.append(f"wrote: {outcome.writes[:5]}")
    lines += ["output:", *excerpt(outcome.output, 10, 200)]
    return "\n".join(lines)


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
@settings(max_examples=EXAMPLES_PER_MUTATOR, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_invalid_recipes_are_rejected_cleanly(mutator: str, data: st.DataObject) -> None:
    chooser = DrawChooser(data)
    mutation = generator().make(mutator, chooser, chooser.choice(sorted(generator().bases)))
    assume(mutation is not None)
    outcome, recipe = run_in_process(mutation, TIMEOUT_S)
    found = problems(mutation, outcome, recipe)
    assert not errors(found), explain(mutation, outcome, found)


# ---------------------------------------------------------------------------------------------
# the generator itself (these pass whatever the state of validation)


def test_bases_are_valid_recipes() -> None:
    """Mutations start from valid recipes, so what they change is what makes them invalid."""
    from prunekit.experiment.recipe import load_recipe

    for name, raw in generator().bases.items():
        assert load_recipe(raw).name == raw["name"], name


def test_bases_cover_every_pruning_method() -> None:
    from prunekit.experiment.recipe import method_names

    assert {raw["prune"]["method"] for raw in generator().bases.values()} == set(method_names())


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
def test_every_mutator_applies_to_every_base(mutator: str) -> None:
    import random

    for base in generator().bases:
        mutation = generator().make(mutator, RandomChooser(random.Random(base)), base)
        if mutation is not None:
            assert mutation.description and (mutation.data or mutation.path_kind != "file")


@pytest.mark.parametrize("value", ["banana", "", "os:getcwd", "..x:f", "a" * 300, [1, 2], {"a": 1}, True, None, -1, 10**31, float("inf")])
def test_placed_values_read_back_as_written(value: object) -> None:
    """Values go into the file as one line of YAML at the right place (and the right line number)."""
    import yaml

    from tests.fuzz.recipe_mutations import get, placed, typed_leaves

    for base in ("demo", "fuzz_dst", "structured_resnet20"):
        raw = generator().bases[base]
        for path, _, _ in typed_leaves(raw)[::6]:
            data, line = placed(raw, path, value)
            assert get(yaml.safe_load(data), path) == value
            assert data.decode().splitlines()[line - 1].rstrip().endswith(yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip())


def test_generation_is_reproducible() -> None:
    import random

    first = [generator().draw(RandomChooser(random.Random(i))) for i in range(30)]
    again = [generator().draw(RandomChooser(random.Random(i))) for i in range(30)]
    assert first == again


@pytest.mark.parametrize(("message", "path", "named"), [
    ("recipe: train.epochs: Input should be greater than 0", "train.epochs", True),
    ("recipe: prune.schedule: invalid iterative schedule: rate: Input should be less than 1", "prune.schedule.rate", True),
    ("recipe: prune.baselines[1]: unknown criterion", "prune.baselines.1", True),
    ("recipe: evaluate.corruptions: unknown corruption 'x'", "evaluate.corruptions.1", True),
    ("recipe: train.epochs_x: unknown key", "train.epochs", False),
    ("recipe: prune.train.epochs: bad", "train.epochs", False),
    ("invalid settings: something is wrong", "train.epochs", False),
])
def test_names_field(message: str, path: str, named: bool) -> None:
    assert names_field(message, path) is named


def test_names_where_accepts_line_override_or_section_with_value() -> None:
    from tests.fuzz.recipe_mutations import names_where

    dup = Mutation("yaml: duplicate key", "", "demo", field="train.epochs", line=12)
    assert names_where("recipe.yaml line 12, column 3: duplicate key 'epochs'", dup, "recipe.yaml")
    assert not names_where("recipe.yaml: duplicate key", dup, "recipe.yaml")
    unknown = Mutation("unknown registry name", "", "demo", field="prune.schedule.name", value="timm")
    assert names_where("recipe: prune.schedule: unknown schedule 'timm'; allowed values: ...", unknown, "r.yaml")
    assert not names_where("recipe: prune.schedule: unknown schedule; allowed values: ...", unknown, "r.yaml")
    override = Mutation("--set: bad key or value", "", "demo", set_args=("train..epochs=1",), needle="train..epochs")
    assert names_where("--set 'train..epochs=1': empty key segment", override, "r.yaml")
    path = Mutation("path: fifo", "", "demo", path_kind="fifo", names_path=True)
    assert names_where("/tmp/x/input/recipe.yaml is not a regular file", path, "/tmp/x/input/recipe.yaml")
