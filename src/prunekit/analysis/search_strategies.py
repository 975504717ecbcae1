"""The registered ratio-search strategies: ``sensitivity``, ``evolutionary`` (optuna) and ``rl`` (REINFORCE).

- ``sensitivity``: scan each group alone (:mod:`prunekit.analysis.group_sensitivity`), then a
  multiple-choice knapsack (:func:`~prunekit.pruners.allocation.best_options`) keeps the smallest
  summed accuracy drop (interpolated between the scanned ratios) within the budget, re-priced per
  sweep because a group's cost depends on its neighbours' widths.
- ``evolutionary``: EagleEye-style: optuna's sampler (NSGA-II by default) proposes one preference per
  group, :meth:`~prunekit.analysis.search_problem.SearchProblem.project` scales them onto the budget,
  and the candidate is scored by validation accuracy after BatchNorm re-calibration. The first
  candidate is the uniform one.
- ``rl``: AMC-style: a small policy walks the groups in order and picks each one's preference from
  its state (position, width, share of the cost, previous action); REINFORCE with a moving-average
  baseline on the same score; the budget is met by the same projection.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.analysis.search_problem import SEARCH_STRATEGIES, SearchProblem
from prunekit.errors import ConfigError
from prunekit.pruners.allocation import Candidate, best_options, removal_options

SEARCH_EXTRA = "pip install 'prunekit[search]'"


@SEARCH_STRATEGIES.register("sensitivity", description="per-group sensitivity scan, then a knapsack of accuracy drops under the budget")
def sensitivity_search(problem: SearchProblem) -> dict[int, int]:
    """Knapsack over the sensitivity table: value −drop, weight the cost change; see the module docstring."""
    table = problem.sensitivity()
    assert table.baseline is not None
    options, values = {}, {}
    for c in problem.space.candidates:
        rows = sorted((r for r in table.rows if r.group == c.index), key=lambda r: r.ratio)
        xs, ys = _drop_curve([r.removed for r in rows], [table.baseline.accuracy - r.accuracy for r in rows], c)
        options[c.index] = removal_options(c)
        values[c.index] = -np.interp(options[c.index], xs, ys)
    counts = knapsack_counts(problem, options, values)
    problem.evaluate(counts)
    return counts


def _drop_curve(removed: Sequence[int], drops: Sequence[float], c: Candidate) -> tuple[list[float], list[float]]:
    """Points (units removed, drop) from 0 to the group's cap: the scan, extended by its last slope (never falling)."""
    xs, ys = [0.0], [0.0]
    for k, d in zip(removed, drops):
        if k > xs[-1]:
            xs.append(float(k))
            ys.append(float(d))
    if c.max_remove > xs[-1]:
        slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])) if len(xs) > 1 else 0.0
        ys.append(ys[-1] + slope * (c.max_remove - xs[-1]))
        xs.append(float(c.max_remove))
    return xs, ys


def knapsack_counts(problem: SearchProblem, options: dict[int, list[int]], values: dict[int, np.ndarray], sweeps: int = 6) -> dict[int, int]:
    """Counts maximising the summed value with estimated cost ≤ the goal (best seen within it, repaired if none is)."""
    groups = list(options)
    counts = {g: 0 for g in groups}
    seen: list[tuple[float, float, dict[int, int]]] = []
    for _ in range(sweeps):
        base = problem.cost(counts)
        deltas = [np.array([problem.cost({**counts, g: k}) - base for k in options[g]]) for g in groups]
        floor = [float(d.min()) for d in deltas]
        chosen = best_options([values[g] for g in groups], [d - f for d, f in zip(deltas, floor)], problem.goal - base - sum(floor))
        if chosen is None:
            chosen = [int(np.argmin(d)) for d in deltas]
        new = {g: options[g][k] for g, k in zip(groups, chosen)}
        seen.append((problem.cost(new), _value(options, values, new), new))
        if new == counts:
            break
        counts = new
    within = [s for s in seen if s[0] <= problem.goal]
    best = max(within, key=lambda s: s[1])[2] if within else min(seen, key=lambda s: s[0])[2]
    return _repair(problem, options, values, best)


def _value(options: dict[int, list[int]], values: dict[int, np.ndarray], counts: dict[int, int]) -> float:
    return float(sum(values[g][options[g].index(k)] for g, k in counts.items()))


def _repair(problem: SearchProblem, options: dict[int, list[int]], values: dict[int, np.ndarray], counts: dict[int, int]) -> dict[int, int]:
    """Over the budget: remove one more option step where the least value is lost per unit of cost saved, until it fits."""
    counts = dict(counts)
    while (cost := problem.cost(counts)) > problem.goal:
        moves = []
        for g, k in counts.items():
            i = options[g].index(k)
            if i + 1 < len(options[g]):
                trial = {**counts, g: options[g][i + 1]}
                saved = cost - problem.cost(trial)
                if saved > 0:
                    moves.append(((values[g][i] - values[g][i + 1]) / saved, g, trial))
        if not moves:
            break
        counts = min(moves, key=lambda m: (m[0], m[1]))[2]
    return counts


# --- evolutionary: optuna's samplers ----------------------------------------------------------


def import_optuna() -> Any:
    """optuna, or a ConfigError naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"the evolutionary search uses optuna's samplers, which are not installed: {SEARCH_EXTRA}") from None
    return optuna


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """optuna's per-trial INFO lines off for the search (its verbosity is restored after)."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _sampler(optuna: Any, problem: SearchProblem) -> Any:
    cfg = problem.config
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=cfg.population, seed=cfg.seed)
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, n_startup_trials=min(10, cfg.trials))
    return optuna.samplers.RandomSampler(seed=cfg.seed)


@SEARCH_STRATEGIES.register("evolutionary", description="EagleEye-style: optuna (NSGA-II) proposes ratios on the budget, scored after BatchNorm re-calibration")
def evolutionary_search(problem: SearchProblem) -> dict[int, int]:
    """See the module docstring; the uniform candidate is tried first."""
    optuna = import_optuna()
    names = {c.index: f"g{c.index}" for c in problem.space.candidates}
    with _quiet_optuna(optuna):
        study = optuna.create_study(direction="maximize", sampler=_sampler(optuna, problem))
        space = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names.values()}
        study.enqueue_trial({n: 1.0 for n in names.values()})
        for _ in problem.steps(problem.config.trials, f"evolutionary search ({problem.config.sampler})"):
            trial = study.ask(space)
            counts = problem.project({g: trial.params[n] for g, n in names.items()})
            study.tell(trial, 0.0 if counts is None else problem.evaluate(counts).accuracy)
    return problem.best().counts


# --- rl: a REINFORCE policy over the groups in order (AMC-style) ------------------------------


class _Policy(nn.Module):
    """State of one group → mean logit of its preference (shared over groups)."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)


def _group_features(problem: SearchProblem) -> list[tuple[float, float, float]]:
    """(position, width, share of the budget metric a group alone would save at its cap) per group."""
    cands = problem.space.candidates
    widest = max(c.size for c in cands)
    dense = problem.dense_cost
    return [(i / max(1, len(cands) - 1), c.size / widest, (dense - problem.cost({c.index: c.max_remove})) / dense) for i, c in enumerate(cands)]


@SEARCH_STRATEGIES.register("rl", description="AMC-style agent: a REINFORCE policy picks each group's ratio in order, on the budget")
def rl_search(problem: SearchProblem, lr: float = 0.05, sigma: float = 0.5) -> dict[int, int]:
    """See the module docstring; the exploration noise shrinks linearly to a fifth over the trials."""
    generator = torch.Generator().manual_seed(problem.config.seed)
    policy = _Policy(generator)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    features = _group_features(problem)
    cands = problem.space.candidates
    baseline = None
    trials = problem.config.trials
    for step in problem.steps(trials, "rl search"):
        noise = sigma * (1 - 0.8 * step / max(1, trials - 1))
        previous, log_prob, actions = 0.0, torch.zeros(()), {}
        for c, (pos, width, share) in zip(cands, features):
            mean = policy(torch.tensor([pos, width, share, previous]))
            logit = mean.detach() + noise * torch.randn((), generator=generator)
            log_prob = log_prob - 0.5 * ((logit - mean) / noise) ** 2
            previous = float(torch.sigmoid(logit))
            actions[c.index] = previous
        counts = problem.project(actions)
        reward = 0.0 if counts is None else problem.evaluate(counts).accuracy
        baseline = reward if baseline is None else 0.8 * baseline + 0.2 * reward
        optimizer.zero_grad()
        (-(reward - baseline) * log_prob).backward()
        optimizer.step()
    return problem.best().counts
