"""ToolRL format / correctness rewards: hand-computed cases and agreement on the real ToolRL golds."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rvpo.tasks.toolcall.rewards import (
    correctness_reward,
    correctness_score,
    format_reward,
    format_score,
    make_correctness_reward,
    make_format_reward,
    name_match,
    parse_gold_calls,
    parse_output,
    render_output,
)

DATA = Path(os.environ.get("RVPO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def call(name, **params):
    return {"name": name, "parameters": params}


def out(*calls, think="t", response=None):
    return render_output(list(calls), think=think, response=response)


def corr(text, gold, **kw):
    return correctness_score(text, gold, **kw)


W_PARIS = call("get_weather", city="Paris", unit="celsius")
GOLD1 = out(W_PARIS)  # S_max = 1 + (1 + 2) = 4
GOLD2 = out(call("get_weather", city="Paris"), call("get_weather", city="Tokyo"))  # S_max = 1 + 2 + 2 = 5
GOLD_RESP = "<think> hi </think>\n<response> Hello! </response>"


# ---------------------------------------------------------------------------------------------
# correctness, hand-computed
# ---------------------------------------------------------------------------------------------


def test_gold_scores_max():
    assert corr(GOLD1, GOLD1) == 3.0
    assert corr(GOLD2, GOLD2) == 3.0


def test_one_wrong_value():
    # names 1 + keys 1 + values 1 = 3 of 4 -> 6 * 3/4 - 3
    assert corr(out(call("get_weather", city="Paris", unit="fahrenheit")), GOLD1) == pytest.approx(1.5)


def test_value_type_matters():
    gold = out(call("set_timer", minutes=5))  # S_max 3
    assert corr(out(call("set_timer", minutes="5")), gold) == pytest.approx(6 * 2 / 3 - 3)
    assert corr(out(call("set_timer", minutes=5.0)), gold) == 3.0  # JSON 5.0 == 5 in Python, as upstream


def test_wrong_name():
    assert corr(out(call("get_forecast", city="Paris", unit="celsius")), GOLD1) == -3.0


def test_extra_call():
    # names [w] vs [w, t]: 1/2; call 3 -> 3.5 of 4
    pred = out(W_PARIS, call("get_time", city="Paris"))
    assert corr(pred, GOLD1) == pytest.approx(6 * 3.5 / 4 - 3)


def test_missing_call():
    # names [w, w] vs [w]: 1/2; first call 1 + 1 -> 2.5 of 5 -> 0
    assert corr(out(call("get_weather", city="Paris")), GOLD2) == pytest.approx(0.0)


def test_missing_param():
    # names 1 + keys 1/2 + values 1 = 2.5 of 4
    assert corr(out(call("get_weather", city="Paris")), GOLD1) == pytest.approx(0.75)


def test_order_insensitive():
    pred = out(call("get_weather", city="Tokyo"), call("get_weather", city="Paris"))
    assert corr(pred, GOLD2) == 3.0


def test_greedy_same_name_matching_uses_each_prediction_once():
    # Both gold calls would like the Paris prediction; the second must take the Tokyo one (1 + 0).
    pred = out(call("get_weather", city="Paris"), call("get_weather", city="Lima"))
    assert corr(pred, GOLD2) == pytest.approx(6 * (1 + 2 + 1) / 5 - 3)


def test_greedy_ties_go_to_the_first_prediction():
    # Gold call 1 ties between both predictions (2 each) and takes the first; gold call 2 then gets
    # only 1 from the second (ToolRL's greedy order). A best-overall matching would find 2 + 2.
    gold = out(call("f", x=1, y=1), call("f", x=1, y=2))  # S_max = 1 + 3 + 3
    pred = out(call("f", x=1, y=9), call("f", x=9, y=1))
    assert corr(pred, gold) == pytest.approx(6 * (1 + 2 + 1) / 7 - 3)


@pytest.mark.parametrize("pred", [
    '<think>t</think>\n<tool_call>\n{"name": "get_weather", "parameters": {"city": "Paris"}\n</tool_call>',  # bad JSON
    "<think>t</think>\n<tool_call>\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",  # unclosed
    "<think>t</think>\n<response>It is sunny in Paris.</response>",  # no tool call
    "<think>t</think>\n<tool_call>\n\n</tool_call>",  # empty block
    "<think>t</think>\n<tool_call>\n[1, 2]\n</tool_call>",  # not an object
    "<think>t</think>\n<tool_call>\n{\"name\": \"get_weather\"}\n</tool_call>",  # no parameters
    "",
])
def test_malformed_or_missing_calls_score_min(pred):
    assert corr(pred, GOLD1) == -3.0


def test_blank_line_between_calls_is_malformed_like_toolrl():
    pred = GOLD2.replace("}}\n{", "}}\n\n{")
    assert parse_output(pred).errors and corr(pred, GOLD2) == -3.0


def test_no_call_gold_modes():
    call_pred = out(W_PARIS)
    assert corr(call_pred, GOLD_RESP) == 0.0 and corr(GOLD_RESP, GOLD_RESP) == 0.0  # ToolRL: no signal
    assert corr(call_pred, GOLD_RESP, no_call="abstain") is None
    assert corr(GOLD_RESP, GOLD_RESP, no_call="match") == 3.0
    assert corr(call_pred, GOLD_RESP, no_call="match") == -3.0
    with pytest.raises(ValueError, match="no_call"):
        corr(GOLD_RESP, GOLD_RESP, no_call="bogus")


def test_correctmax1_range():
    fn = make_correctness_reward(max_reward=1.0, min_reward=-1.0)
    assert fn([GOLD1, "", out(call("get_weather", city="Paris", unit="fahrenheit"))], [GOLD1] * 3) == [1.0, -1.0, 0.5]


def test_tags_inside_think_are_ignored():
    gold = "<think> I will put calls in the <tool_call> block, no <response> yet. </think>\n" + GOLD1.split("\n", 1)[1]
    assert parse_gold_calls(gold) == [W_PARIS]
    assert corr(gold, gold) == 3.0 and format_score(gold, gold) == 1.0
    assert format_score(GOLD1, gold) == 1.0  # the gold needs no <response>


def test_name_match_is_a_multiset_jaccard():
    assert name_match([], []) == 1.0 and name_match(["a"], []) == 0.0
    assert name_match(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 4)
    assert name_match(["b", "a"], ["a", "b"]) == 1.0


def test_bad_gold_raises_clear_error():
    with pytest.raises(ValueError, match="ground truth"):
        corr(GOLD1, "<think>x</think>\n<tool_call>\nnot json\n</tool_call>")


# ---------------------------------------------------------------------------------------------
# format, hand-built edge cases
# ---------------------------------------------------------------------------------------------

BODY = GOLD1.split("</think>\n", 1)[1]  # "<tool_call>\n...\n</tool_call>"


@pytest.mark.parametrize("text,expected", [
    (GOLD1, 1.0),
    (GOLD1 + "\n\n", 1.0),  # stripped, as ToolRL's compute_score does
    (BODY, 0.0),  # missing think
    ("<think>a</think>\n<think>b</think>\n" + BODY, 0.0),  # duplicated think
    (BODY + "\n<think>a</think>", 0.0),  # wrong order
    ("<think>a</think>\n" + BODY + "\n" + BODY, 0.0),  # duplicated tool_call
    ("<think>a</think>" + BODY, 0.0),  # no newline between parts
    ("<think>a</think>\n" + BODY + "\n<response>x</response>", 0.0),  # response the gold lacks
    ("<think>a</think>\n" + BODY + " thanks", 0.0),  # trailing text
    ("<think>a</think>\n<tool_call>{\"name\": \"x\", \"parameters\": {}}</tool_call>", 0.0),  # calls not on own lines
])
def test_format_tool_gold(text, expected):
    assert format_score(text, GOLD1) == expected


def test_format_response_and_both_and_none():
    assert format_score(GOLD_RESP, GOLD_RESP) == 1.0
    assert format_score(GOLD1, GOLD_RESP) == 0.0
    assert format_score("<think>a</think>\n<response>x</response>\n<response>y</response>", GOLD_RESP) == 0.0
    both = out(W_PARIS, response="Done.")
    assert format_score(both, both) == 1.0
    assert format_score(GOLD1, both) == 0.0 and format_score(GOLD_RESP, both) == 0.0
    assert format_score("<think>a</think>", "<think>b</think>") == 1.0


def test_strict_think_is_the_only_switchable_deviation():
    dup = "<think>a</think>\n<think>b</think>\n" + BODY
    assert format_score(dup, GOLD1, strict_think=False) == 1.0  # upstream's behaviour
    assert make_format_reward(strict_think=False)([dup], [GOLD1]) == [1.0]


# ---------------------------------------------------------------------------------------------
# TRL contract
# ---------------------------------------------------------------------------------------------


def test_trl_contract_names_and_conversational_form():
    assert format_reward.__name__ == "format" and correctness_reward.__name__ == "correctness"
    conv = [[{"role": "assistant", "content": GOLD1}], [{"role": "assistant", "content": "nothing"}]]
    kw = dict(prompts=[[{"role": "user", "content": "q"}]] * 2, completion_ids=[[1], [2]], id=["a", "b"])
    assert format_reward(completions=conv, ground_truth=[GOLD1, GOLD1], **kw) == [1.0, 0.0]
    assert correctness_reward(completions=conv, ground_truth=[GOLD1, GOLD1], **kw) == [3.0, -3.0]
    abstain = make_correctness_reward(no_call="abstain")
    assert abstain.__name__ == "correctness" and abstain([GOLD1, GOLD1], [GOLD1, GOLD_RESP]) == [3.0, None]


def test_trl_contract_errors():
    with pytest.raises(ValueError, match="ground_truth"):
        format_reward(["x"])
    with pytest.raises(ValueError, match="2 completions but 1"):
        correctness_reward(["x", "y"], ["z"])


def test_parse_output_never_raises_and_records_errors():
    p = parse_output('<think> a </think>\n<tool_call>\n{bad\n{"name": "f", "parameters": {}}\n</tool_call>\n'
                     "<response> r </response>")
    assert p.think == "a" and p.response == "r" and p.tool_calls == [call("f")]
    assert len(p.errors) == 1 and "line 1" in p.errors[0] and not p.ok
    assert parse_output(None).tool_calls is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# real ToolRL golds: gold = max, systematic perturbations strictly less (closed form), malformed = min
# ---------------------------------------------------------------------------------------------


def _toolrl_golds() -> list[str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(DATA / "toolrl" / "rlla_4k_test.parquet").to_pylist()
    sft = json.loads((DATA / "toolrl" / "rlla_sft.json").read_text())
    return [r["reward_model"]["ground_truth"] for r in rows] + [r["output"] for r in sft]


@pytest.fixture(scope="module")
def golds():
    gs = _toolrl_golds()
    assert len(gs) == 480
    return gs


def _other(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "_x"
    if isinstance(v, list):
        return v + ["_x"]
    if isinstance(v, dict):
        return {**v, "_x": 1}
    return "_x"


def perturbations(calls):
    """(label, predicted calls, score lost out of S_max or None when not closed-form)."""
    n = len(calls)
    distinct = len({c["name"] for c in calls}) == n
    j = next((i for i, c in enumerate(calls) if c["parameters"]), None)
    out_ = [("reverse", calls[::-1], 0.0)] if n > 1 else []
    if j is not None:
        k = len(calls[j]["parameters"])
        key = next(iter(calls[j]["parameters"]))
        changed = copy.deepcopy(calls)
        changed[j]["parameters"][key] = _other(changed[j]["parameters"][key])
        out_.append(("value", changed, 1.0 if distinct else None))
        dropped = copy.deepcopy(calls)
        del dropped[j]["parameters"][key]
        out_.append(("drop_param", dropped, (1.0 + 1.0 / k) if distinct else None))
        extra = copy.deepcopy(calls)
        extra[j]["parameters"]["zz_extra"] = 1
        out_.append(("extra_param", extra, (1.0 - k / (k + 1)) if distinct else None))
    renamed = copy.deepcopy(calls)
    renamed[0]["name"] = "zz_not_a_tool"
    out_.append(("rename", renamed, (2.0 / (n + 1) + 1 + len(calls[0]["parameters"])) if distinct else None))
    out_.append(("extra_call", calls + [{"name": "zz_extra", "parameters": {}}], 1.0 / (n + 1) if distinct else None))
    if n > 1:
        out_.append(("drop_call", calls[:-1], (1.0 / n + 1 + len(calls[-1]["parameters"])) if distinct else None))
    return out_


@pytest.mark.needs_shared("toolrl")
def test_real_golds_score_max_against_themselves(golds):
    assert format_reward(golds, golds) == [1.0] * len(golds)
    scores = correctness_reward([[{"role": "assistant", "content": g}] for g in golds], golds)
    n_call = sum(parse_gold_calls(g) is not None for g in golds)
    assert n_call == 71 + 346
    assert sorted(set(scores)) == [0.0, 3.0] and scores.count(3.0) == n_call


@pytest.mark.needs_shared("toolrl")
def test_real_golds_perturbations_closed_form(golds):
    n_checked = n_closed = 0
    for g in golds:
        calls = parse_gold_calls(g)
        if calls is None:
            continue
        think = g.split("</think>")[0] + "</think>"
        response = parse_output(g).response
        s_max = 1 + sum(1 + len(c["parameters"]) for c in calls)
        for label, pred, lost in perturbations(calls):
            text = think + "\n" + render_output(pred, response=response).split("\n", 1)[1]
            got = correctness_score(text, g)
            assert format_score(text, g) == 1.0, label
            assert -3.0 <= got <= 3.0, (label, got)
            n_checked += 1
            if lost == 0.0:
                assert got == 3.0, (label, g)
                continue
            assert got < 3.0, (label, g)
            if lost is not None:
                n_closed += 1
                assert got == pytest.approx(6 * (s_max - lost) / s_max - 3, abs=1e-9), (label, g)
    assert n_checked > 1500 and n_closed > 1200


@pytest.mark.needs_shared("toolrl")
def test_real_golds_malformed(golds):
    for g in golds:
        calls = parse_gold_calls(g)
        think, rest = g.split("</think>", 1)
        think += "</think>"
        broken = [
            rest.lstrip("\n"),  # missing think
            think + "\n" + think + rest,  # duplicated think
            rest.lstrip("\n") + "\n" + think,  # wrong order
        ]
        for b in broken:
            assert format_score(b, g) == 0.0
        if calls is None:
            assert format_score(think + "\n<tool_call>\n{}\n</tool_call>", g) == 0.0
            continue
        block = rest.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
        malformed = [  # (completion, format score): format only looks at the tags
            (think + "\n<tool_call>" + block[:-3] + "\n</tool_call>", 1.0),  # truncated JSON
            (think + "\n<tool_call>" + block, 0.0),  # unclosed
            (think + "\n<response> I would call a tool. </response>", 0.0),  # no call
            (think + "\n<tool_call>" + block.replace('"parameters"', '"params"') + "</tool_call>", 1.0),  # wrong key
        ]
        needs_response = "<response>" in rest
        for m, fmt in malformed:
            assert correctness_score(m, g) == -3.0, m
            assert format_score(m, g) == (0.0 if needs_response else fmt), m


# ---------------------------------------------------------------------------------------------
# BFCL accepted values (rvpo extension)
# ---------------------------------------------------------------------------------------------

HYPOT_GOLD = out(call("math.hypot", x=4, y=5))  # S_max 1 + 3 = 4
HYPOT_ACC = json.dumps([{"name": "math.hypot", "parameters": {"x": [4, 4.0], "y": [5], "z": ["", 0]}}])


@pytest.mark.parametrize("params,plain,widened", [
    ({"x": 4, "y": 5}, 3.0, 3.0),
    ({"x": 4, "y": 5, "z": 0}, 6 * (1 + 2 / 3 + 2) / 4 - 3, 3.0),  # accepted optional value: dropped
    ({"x": 4, "y": 5, "z": 7}, 6 * (1 + 2 / 3 + 2) / 4 - 3, 6 * (1 + 2 / 3 + 2) / 4 - 3),  # not accepted: kept
    ({"x": 4, "y": 6}, 1.5, 1.5),
])
def test_accepted_values_widen_exact_match(params, plain, widened):
    pred = out(call("math.hypot", **params))
    assert corr(pred, HYPOT_GOLD) == pytest.approx(plain)
    assert corr(pred, HYPOT_GOLD, accepted=HYPOT_ACC) == pytest.approx(widened)
    got = correctness_reward([pred, pred], [HYPOT_GOLD] * 2, accepted=[HYPOT_ACC, None])
    assert got == pytest.approx([widened, plain])
    assert make_correctness_reward(use_accepted=False)([pred], [HYPOT_GOLD], accepted=[HYPOT_ACC]) == pytest.approx([plain])


def test_accepted_errors():
    with pytest.raises(ValueError, match="'accepted' is not valid JSON"):
        corr(HYPOT_GOLD, HYPOT_GOLD, accepted="{oops")
    with pytest.raises(ValueError, match="1 entries but the gold has 2"):
        corr(GOLD1, GOLD2, accepted=HYPOT_ACC.replace("math.hypot", "get_weather"))
    with pytest.raises(ValueError, match="'accepted' values"):
        correctness_reward([HYPOT_GOLD], [HYPOT_GOLD], accepted=[None, None])


# ---------------------------------------------------------------------------------------------
# property: any text scores within range and never raises
# ---------------------------------------------------------------------------------------------

_PIECES = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<response>", "</response>", "\n", " ", "x",
           '{"name": "get_weather", "parameters": {"city": "Paris"}}', '{"name": "get_weather"', "}", "[1]",
           '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}']


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14),
       st.sampled_from([GOLD1, GOLD2, GOLD_RESP, out(W_PARIS, response="ok")]))
def test_any_text_scores_in_range(pieces, gold):
    text = "".join(pieces)
    p = parse_output(text)
    assert isinstance(p.errors, list)
    assert format_score(text, gold) in (0.0, 1.0)
    c = correctness_score(text, gold)
    assert -3.0 <= c <= 3.0
    if c == 3.0 and parse_gold_calls(gold) is not None:
        assert sorted(map(json.dumps, p.tool_calls)) == sorted(map(json.dumps, parse_gold_calls(gold)))
