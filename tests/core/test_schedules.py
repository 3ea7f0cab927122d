"""k schedules: values over a run, round trips through dicts, strings and YAML, clear errors."""

import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rvpo.core import Constant, Cosine, Linear, Step, make_schedule, schedule_to_dict, schedule_to_str


def test_linear_paper_default_endpoints_and_midpoint():
    s = make_schedule("linear:0.5:2.0")
    assert s(0, 101) == 0.5
    assert s(50, 101) == pytest.approx(1.25)
    assert s(100, 101) == 2.0
    assert s(500, 101) == 2.0  # clipped past the end


def test_constant_cosine_step():
    assert make_schedule(1.5)(7, 10) == 1.5
    c = make_schedule("cosine:0.5:2.0")
    assert c(0, 11) == pytest.approx(0.5) and c(10, 11) == pytest.approx(2.0)
    assert c(5, 11) == pytest.approx(1.25)  # half-way of a half-cosine
    assert c(2, 11) < Linear(0.5, 2.0)(2, 11)  # slow start
    st_ = make_schedule("step:0.5,1,2")
    # progress i / 9 against boundaries 1/3 and 2/3
    assert [st_(i, 10) for i in (0, 2, 3, 5, 6, 9)] == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0]
    st2 = make_schedule("step:0.5,2:0.8")
    assert st2(7, 11) == 0.5 and st2(8, 11) == 2.0


def test_single_step_run_uses_the_start():
    assert make_schedule("linear:0.5:2.0")(0, 1) == 0.5


@pytest.mark.parametrize("sched", [Constant(0.7), Linear(0.5, 2.0), Cosine(2.0, 0.1), Step((0.5, 1.0, 3.0)), Step((1.0, 2.0), (0.25,))])
def test_round_trips(sched):
    d = schedule_to_dict(sched)
    assert make_schedule(yaml.safe_load(yaml.safe_dump(d))) == sched
    assert make_schedule(schedule_to_str(sched)) == sched
    assert make_schedule(sched) is sched


@given(st.floats(0, 10), st.floats(0, 10), st.integers(1, 1000), st.data())
def test_linear_stays_between_endpoints(a, b, total, data):
    step = data.draw(st.integers(0, total))
    k = Linear(a, b)(step, total)
    assert min(a, b) - 1e-9 <= k <= max(a, b) + 1e-9 and math.isfinite(k)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("linear:0.5", "cannot parse"),
        ("wiggle:1:2", "cannot parse"),
        ("linear:a:2", "cannot parse"),
        ("-1", "value"),
        ({"type": "zigzag"}, "k_schedule.type"),
        ({"type": "linear", "strat": 0.5}, "bad fields"),
        ({"type": "step", "values": [1, 2], "boundaries": [0.5, 0.7]}, "boundaries"),
        (True, "k_schedule"),
        ([1, 2], "k_schedule"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(spec)
