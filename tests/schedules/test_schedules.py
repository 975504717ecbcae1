import logging

import pytest
from pydantic import ValidationError

from prunekit.errors import ConfigError, UnknownNameError
from prunekit.schedules import SCHEDULES, Constant, Cubic, Iterative, OneShot, PolynomialDecay, build_schedule


def _example(name):
    return SCHEDULES.get(name)(**SCHEDULES.meta(name)["example"])


# -- contract: every registered schedule -------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_contract(name):
    schedule = _example(name)
    assert schedule.name == name
    events = schedule.event_steps()
    assert events == sorted(set(events)) and events
    horizon = events[-1] + 20
    assert [t for t in range(horizon) if schedule.should_prune(t)] == events
    values = [schedule.sparsity_at(t) for t in range(horizon)]
    assert all(0.0 <= v < 1.0 for v in values)
    at_events = [schedule.sparsity_at(t) for t in events]
    assert at_events == sorted(at_events), "examples prune more over time"


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_contract_state_dict_round_trip(name):
    schedule = _example(name)
    state = schedule.state_dict()
    rebuilt = build_schedule(state)
    assert type(rebuilt) is type(schedule) and rebuilt == schedule
    other = SCHEDULES.get(name).model_validate({**state, "begin_step" if "begin_step" in state else "step": 0})
    other.load_state_dict(state)
    assert other == schedule
    with pytest.raises(ValidationError):
        other.load_state_dict({**state, "unknown_key": 1})


def test_build_schedule_errors_list_the_names():
    with pytest.raises(ConfigError, match="one_shot"):
        build_schedule({"final_sparsity": 0.5})
    with pytest.raises(UnknownNameError, match="allowed values: constant, cubic, iterative, one_shot, polynomial_decay"):
        build_schedule({"name": "linear"})


# -- polynomial_decay: TF-MOT semantics ----------------------------------------------------------
def test_polynomial_decay_matches_tfmot_documented_values():
    # tensorflow_model_optimization pruning_schedule_test.testPolynomialDecay_PrunesCorrectly
    s = PolynomialDecay(initial_sparsity=0.2, final_sparsity=0.8, begin_step=100, end_step=110, power=3, frequency=2)
    assert s.sparsity_at(100) == pytest.approx(0.2)
    assert s.sparsity_at(102) == pytest.approx(0.4928)
    assert s.sparsity_at(105) == pytest.approx(0.725)
    assert s.sparsity_at(110) == pytest.approx(0.8)


def test_polynomial_decay_clamps_before_and_after():
    s = PolynomialDecay(initial_sparsity=0.3, final_sparsity=0.9, begin_step=10, end_step=20, frequency=5)
    assert s.sparsity_at(0) == pytest.approx(0.3)
    assert s.sparsity_at(25) == s.sparsity_at(10_000) == pytest.approx(0.9)
    assert s.sparsity_at(15) == pytest.approx(0.9 - 0.6 * 0.5**3)
    assert PolynomialDecay(initial_sparsity=0, final_sparsity=0.5, begin_step=0, end_step=4, power=1, frequency=1).sparsity_at(1) == 0.125


def test_polynomial_decay_prunes_only_in_range_at_frequency():
    # mirrors testPrunesOnlyInBeginEndStepRange / testOnlyPrunesAtValidFrequencySteps
    every = PolynomialDecay(initial_sparsity=0.2, final_sparsity=0.8, begin_step=100, end_step=200, frequency=1)
    assert [every.should_prune(t) for t in (90, 99, 100, 110, 200, 201, 210)] == [False, False, True, True, True, False, False]
    tenth = PolynomialDecay(initial_sparsity=0.2, final_sparsity=0.8, begin_step=100, end_step=200, frequency=10)
    assert [tenth.should_prune(t) for t in (100, 109, 110, 111)] == [True, False, True, False]
    assert tenth.event_steps() == list(range(100, 201, 10))


def test_polynomial_decay_warns_when_the_final_sparsity_is_never_applied(caplog):
    with caplog.at_level(logging.WARNING):
        s = PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=3376)
    assert "never reached" in caplog.text
    assert s.event_steps()[-1] == 3300 and s.sparsity_at(3300) < 0.8


def test_polynomial_decay_end_equal_to_begin_prunes_once_to_final():
    s = PolynomialDecay(initial_sparsity=0.1, final_sparsity=0.6, begin_step=5, end_step=5)
    assert s.event_steps() == [5] and s.sparsity_at(5) == pytest.approx(0.6) and s.sparsity_at(4) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"initial_sparsity": 1.0}, "initial_sparsity"),
        ({"final_sparsity": -0.001}, "final_sparsity"),
        ({"begin_step": -1}, "begin_step"),
        ({"end_step": -1}, "end_step"),
        ({"begin_step": 10, "end_step": 5}, "end_step"),
        ({"frequency": 0}, "frequency"),
        ({"power": 0}, "power"),
        ({"extra": 1}, "extra"),
    ],
)
def test_polynomial_decay_validation_names_the_field(kwargs, field):
    base = {"initial_sparsity": 0.2, "final_sparsity": 0.8, "begin_step": 0, "end_step": 100}
    with pytest.raises(ValidationError, match=field):
        PolynomialDecay(**{**base, **kwargs})


# -- cubic (Zhu & Gupta) ---------------------------------------------------------------------------
def test_cubic_hand_computed_values():
    s = Cubic(initial_sparsity=0.0, final_sparsity=0.9, begin_step=10, frequency=5, n_steps=4)
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, n dt = 20
    assert s.event_steps() == [10, 15, 20, 25, 30]
    assert [round(s.sparsity_at(t), 6) for t in s.event_steps()] == [0.0, round(0.9 - 0.9 * 0.75**3, 6), round(0.9 - 0.9 * 0.5**3, 6), round(0.9 - 0.9 * 0.25**3, 6), 0.9]
    assert s.sparsity_at(9) == 0.0 and s.sparsity_at(1000) == pytest.approx(0.9)
    assert not s.should_prune(35) and not s.should_prune(12)


def test_cubic_equals_polynomial_decay_with_power_3_on_its_grid():
    cubic = Cubic(initial_sparsity=0.1, final_sparsity=0.85, begin_step=3, frequency=7, n_steps=6)
    poly = PolynomialDecay(initial_sparsity=0.1, final_sparsity=0.85, begin_step=3, end_step=cubic.end_step, frequency=7)
    assert cubic.event_steps() == poly.event_steps()
    assert all(cubic.sparsity_at(t) == pytest.approx(poly.sparsity_at(t)) for t in range(3, 60))


# -- iterative, one_shot, constant -----------------------------------------------------------------
def test_iterative_constant_fraction_per_round():
    s = Iterative(rate=0.2, final_sparsity=0.9)
    assert s.rounds == 11  # 1 - 0.8**10 = 0.893 < 0.9 <= 1 - 0.8**11
    assert s.event_steps() == list(range(11))
    for k in range(1, 11):
        assert s.sparsity_at(k - 1) == pytest.approx(1 - 0.8**k)
    assert s.sparsity_at(10) == 0.9 and s.sparsity_at(50) == 0.9 and not s.should_prune(11)


def test_iterative_with_begin_and_frequency_holds_between_rounds():
    s = Iterative(rate=0.5, final_sparsity=0.75, begin_step=10, frequency=5)
    assert s.event_steps() == [10, 15]
    assert [s.sparsity_at(t) for t in (9, 10, 14, 15, 100)] == [0.0, 0.5, 0.5, 0.75, 0.75]
    assert Iterative(rate=0.5, final_sparsity=0.0).event_steps() == []


def test_one_shot():
    s = OneShot(sparsity=0.9, step=3)
    assert [s.sparsity_at(t) for t in (0, 2, 3, 9)] == [0.0, 0.0, 0.9, 0.9]
    assert s.event_steps() == [3] and s.should_prune(3) and not s.should_prune(4)
    with pytest.raises(ValidationError, match="sparsity"):
        OneShot(sparsity=1.0)


def test_constant_is_tfmot_constant_sparsity():
    forever = Constant(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=10)
    assert forever.should_prune(10_000) and forever.should_prune(100_000_000) and not forever.should_prune(5)
    assert forever.sparsity_at(10_000) == 0.5
    with pytest.raises(ConfigError, match="end_step"):
        forever.event_steps()
    bounded = Constant(target_sparsity=0.5, begin_step=100, end_step=200, frequency=10)
    assert [bounded.should_prune(t) for t in (90, 100, 110, 200, 210)] == [False, True, True, True, False]
    with pytest.raises(ValidationError, match="end_step"):
        Constant(target_sparsity=0.5, begin_step=10, end_step=5)
