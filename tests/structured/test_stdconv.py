"""Weight-standardised convolutions: output filters prune exactly, input channels stay with a warning,
every criterion scores them, and a group a criterion cannot score is skipped, never fatal."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import typer
import torch.nn.functional as F
from torch import nn

import prunekit
from prunekit.cli.errors import EXIT_CONFIG, user_errors
from prunekit.errors import ConfigError, StructureError
from prunekit.importance import GROUP_CRITERIA, GroupCriterion, NothingToScore, ScoringContext, collect_calibration, make_criterion
from prunekit.structured import PruningWarning
from prunekit.structured.surgery import remove_units

from .archgen import BiTStdConv2d, ScaledStdConv2d, StdConv2d
from .helpers import graph_of, outputs, relative_error, zeroed


def model_with(std: type[StdConv2d], k: int, consumer: str = "conv") -> nn.Sequential:
    """conv -> BN -> ReLU -> standardised conv (layer "3") -> ReLU -> consumer (layer "5") -> head."""
    torch.manual_seed(0)
    tail = nn.Conv2d(12, 6, 1) if consumer == "conv" else std(12, 6, 1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), std(8, 12, k), nn.ReLU(), tail,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    return model.double().eval()


X = torch.randn(2, 3, 6, 6, dtype=torch.float64)
KINDS = [(std, k) for std in (StdConv2d, ScaledStdConv2d, BiTStdConv2d) for k in (1, 3)]


def _graph(model: nn.Module) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = graph_of(model, X)
    return graph, [str(w.message) for w in caught if issubclass(w.category, PruningWarning)]


@pytest.mark.parametrize(("std", "k"), KINDS)
def test_output_filters_prune_like_zeroing_and_inputs_are_refused_by_name(std, k) -> None:
    model = model_with(std, k)
    graph, messages = _graph(model)
    group = next(g for g in graph.prunable_groups() if g.name == "3")
    roles = {(m.fqn, m.dim): m.role for m in group.members}
    assert roles[("3.weight", 0)] == "out" and roles[("5.weight", 1)] == "in" and roles[("3.bias", 0)] == "bias"
    assert roles.get(("3.gain", 0)) == ("norm_weight" if std is ScaledStdConv2d else None)
    assert not any(g.prunable for g in graph.groups_of("0")), "inputs of a standardised conv must stay"
    named = [m for m in messages if m.startswith("3: ")]
    assert len(named) == 1 and "weight standardisation normalises each filter by the mean and std over its input channels" in named[0], messages

    units = [0, 4, 7]
    expected = outputs(zeroed(model, group, units), X)
    pruned = copy.deepcopy(model)
    remove_units(_graph(pruned)[0], {group.index: units})
    assert pruned[3].weight.shape[0] == 9 and pruned[5].weight.shape[1] == 9
    if std is ScaledStdConv2d:
        assert pruned[3].gain.shape == (9, 1, 1, 1)
    assert relative_error(expected, outputs(pruned, X)) <= 1e-9


def test_a_standardised_consumer_blocks_its_producer_with_a_warning_and_prunes_its_own_filters() -> None:
    model = model_with(ScaledStdConv2d, 3, consumer="std")
    graph, messages = _graph(model)
    assert [g.name for g in graph.prunable_groups()] == ["5"]
    assert [m.split(":")[0] for m in messages if "mean and std" in m] == ["3", "5"]
    group = graph.prunable_groups()[0]
    expected = outputs(zeroed(model, group, [1, 2]), X)
    pruned = copy.deepcopy(model)
    remove_units(_graph(pruned)[0], {group.index: [1, 2]})
    assert relative_error(expected, outputs(pruned, X)) <= 1e-9


def test_l2_scores_a_standardised_group_through_its_raw_filters_and_the_consumer() -> None:
    model = model_with(ScaledStdConv2d, 3)
    graph, _ = _graph(model)
    group = next(g for g in graph.prunable_groups() if g.name == "3")
    scores = make_criterion("l2", reduction="sum", normalization="none")(group, ScoringContext(model, graph))
    expected = model[3].weight.detach().pow(2).sum((1, 2, 3)) + model[5].weight.detach().pow(2).sum((0, 2, 3))
    torch.testing.assert_close(scores, expected)


def _calibration(model: nn.Module, criterion: GroupCriterion):
    if not criterion.needs:
        return None
    batches = [(X, torch.tensor([0, 3]))]
    return collect_calibration(model, batches, criterion.needs)


@pytest.mark.parametrize("name", GROUP_CRITERIA.names())
@pytest.mark.parametrize("std", [StdConv2d, ScaledStdConv2d, BiTStdConv2d])
def test_every_criterion_prunes_the_old_crash_repro(name, std) -> None:
    model = model_with(std, 3)
    criterion = make_criterion(name)
    calibration = _calibration(model, criterion)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = prunekit.prune_structured(model, X, ratio=0.5, round_to=1, importance=criterion, calibration=calibration)
    channels = {layer.name: (layer.before, layer.after) for layer in result.layers}
    assert channels["0"] == (8, 8) and channels["3"] == (12, 6)
    named = [str(w.message) for w in caught if issubclass(w.category, PruningWarning) and str(w.message).startswith("3: ")]
    assert len(named) == 1 and named[0].endswith("(layers left untouched: 0)"), named  # the first conv is named too


class NormOnly(GroupCriterion):
    """Reads only norm weights: the groups without a norm layer have nothing for it."""

    roles = ("norm_weight",)

    def member_scores(self, member, tensor, group, ctx):
        return member.unit_sum(member.per_position(tensor.abs()), group.size)


def test_a_group_a_criterion_cannot_score_is_skipped_with_a_warning_naming_it() -> None:
    model = model_with(StdConv2d, 3)  # groups "3" and "5" have no norm weight (plain StdConv2d has no gain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = prunekit.prune_structured(model, X, ratio=0.5, round_to=1, importance=NormOnly())
    skipped = [str(w.message) for w in caught if "nothing to score" in str(w.message)]
    assert [m.split(":")[0] for m in skipped] == ["3", "5"]
    assert "NormOnly has nothing to score in group '3': it reads members of role norm_weight" in skipped[0]
    assert all(m in result.warnings for m in skipped)
    assert {layer.name: layer.after for layer in result.layers} == {"0": 8, "3": 12, "5": 6, "8": 4}


def test_nothing_to_score_is_a_model_property_not_a_settings_error() -> None:
    assert issubclass(NothingToScore, StructureError) and not issubclass(NothingToScore, ConfigError)
    graph, _ = _graph(model_with(StdConv2d, 3))
    group = next(g for g in graph.prunable_groups() if g.name == "3")
    with pytest.raises(typer.Exit) as exit_info, user_errors():
        NormOnly()(group, ScoringContext(graph.model, graph))
    assert exit_info.value.exit_code not in (0, EXIT_CONFIG)


class TokenBatchStats(nn.Module):
    """Batch statistics over the feature axis of (B, N, C) tokens: features can never be removed exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.batch_norm(self.fc1(x), None, None, training=True))


def test_batch_statistics_over_a_labelled_axis_refuse_it_with_a_warning() -> None:
    model = TokenBatchStats().double()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = graph_of(model, torch.randn(2, 5, 4, dtype=torch.float64))
    assert graph.prunable_groups() == []
    messages = [str(w.message) for w in caught if issubclass(w.category, PruningWarning)]
    assert any("batch_norm with batch statistics normalises over axis 2" in m for m in messages), messages


def test_group_scores_skips_what_a_criterion_cannot_score_and_keeps_the_rest() -> None:
    from prunekit.pruners.structured import group_scores

    model = model_with(ScaledStdConv2d, 3)  # "3" has the gain (a norm weight), "5" (plain conv) has none
    graph, _ = _graph(model)
    with pytest.warns(PruningWarning, match=r"^5: channels coupled to it are left untouched: NormOnly has nothing to score"):
        scores = group_scores(graph, NormOnly(normalization="none"), ScoringContext(model, graph))
    assert list(scores) == [next(g.index for g in graph.groups if g.name == "3")]
    torch.testing.assert_close(torch.from_numpy(next(iter(scores.values()))), model[3].gain.detach().abs().flatten())
    assert [g.name for g in graph.prunable_groups()] == ["3"]


@pytest.mark.parametrize("std", [ScaledStdConv2d, BiTStdConv2d])
@pytest.mark.parametrize("groups", [2, 8])
def test_grouped_standardised_convs_keep_input_stripes_and_depthwise_ones_prune_whole_channels(std, groups) -> None:
    torch.manual_seed(0)
    conv = std(8, 8, 3)
    conv.groups, conv.weight = groups, nn.Parameter(torch.randn(8, 8 // groups, 3, 3))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), conv, nn.ReLU(), nn.Conv2d(8, 5, 1), nn.Flatten(),
                          nn.Linear(5 * 36, 3)).double().eval()
    graph, messages = _graph(model)
    if groups == 8:  # depthwise: a unit is one channel and its own filter, whose fan-in goes with it
        assert [g.name for g in graph.prunable_groups()] == ["0", "4"] and not messages
    else:  # output stripes are exact, input stripes change every filter's statistics
        assert [g.name for g in graph.prunable_groups()] == ["2", "4"]
        assert [m.split(":")[0] for m in messages] == ["2"] and "weight standardisation" in messages[0]
    group = graph.prunable_groups()[0]
    expected = outputs(zeroed(model, group, [1]), X)
    pruned = copy.deepcopy(model)
    remove_units(_graph(pruned)[0], {group.index: [1]})
    assert relative_error(expected, outputs(pruned, X)) <= 1e-9
