"""rvpo.tasks.toolcall.eval and ``rvpo eval toolcall``: scoring with the reward parsers, loading policies."""

from __future__ import annotations

import json

import pytest

from rvpo.tasks.toolcall import generate_examples
from rvpo.tasks.toolcall.eval import evaluate_toolcall, markdown_table, score_toolcall
from rvpo.tasks.toolcall.rewards import render_output

CALL_GOLD = render_output([{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}], think="weather")
RESP_GOLD = render_output(None, think="no tool", response="I cannot do that.")


def _ex(gt: str, i: int = 0) -> dict:
    return {"prompt": [{"role": "system", "content": "tools"}, {"role": "user", "content": f"q{i}"}],
            "ground_truth": gt, "id": f"x{i}"}


def test_score_hand_cases():
    wrong_value = render_output([{"name": "get_weather", "parameters": {"city": "Rome", "unit": "c"}}], think="w")
    examples = [_ex(CALL_GOLD, 0), _ex(CALL_GOLD, 1), _ex(CALL_GOLD, 2), _ex(RESP_GOLD, 3), _ex(RESP_GOLD, 4)]
    completions = [
        CALL_GOLD,          # perfect: format 1, correctness 3, exact
        wrong_value,        # format 1; names 1 + keys 1 + values 1 of 2 -> (1+1+1)/(1+3)=0.75 -> -3+6*0.75=1.5
        "Paris, probably",  # no tool call: format 0, correctness -3
        RESP_GOLD,          # response-only gold answered without a call: exact, correctness 0 (ToolRL)
        CALL_GOLD,          # a call where none was wanted: format 0, not exact, correctness 0
    ]
    r = score_toolcall(examples, completions)
    recs = r["records"]
    assert [x["format"] for x in recs] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert [x["exact_match"] for x in recs] == [True, False, False, True, False]
    assert [x["correctness"] for x in recs] == pytest.approx([3.0, 1.5, -3.0, 0.0, 0.0])
    assert r["n"] == 5 and r["format_rate"] == pytest.approx(0.6) and r["exact_match_rate"] == pytest.approx(0.4)
    assert r["mean_correctness"] == pytest.approx((3 + 1.5 - 3) / 5)
    lo, hi = r["format_ci95"]
    assert 0 < lo < 0.6 < hi < 1
    assert recs[0]["question"] == "q0" and recs[0]["id"] == "x0"
    assert "| before | 5 | 0.600" in markdown_table([("before", r)])


def test_score_rejects_length_mismatch():
    with pytest.raises(ValueError, match="2 examples but 1 completions"):
        score_toolcall([_ex(CALL_GOLD), _ex(CALL_GOLD)], ["x"])


def test_evaluate_uses_greedy_generation(monkeypatch):
    """The loaded-model path: prompts go to generate() greedily, in order; golds score perfectly."""
    import rvpo.tasks.toolcall.eval as toolcall_eval

    examples = generate_examples(6, seed=1)
    seen = {}

    def fake_generate(model, tok, prompts, max_new_tokens, temperature, batch_size, **kw):
        seen.update(n=len(prompts), t=temperature, m=max_new_tokens, b=batch_size)
        by_user = {ex["prompt"][-1]["content"]: ex["ground_truth"] for ex in examples}
        return [by_user[p[-1]["content"]] for p in prompts]

    monkeypatch.setattr(toolcall_eval, "generate", fake_generate)
    r = evaluate_toolcall(object(), examples, max_new_tokens=5, batch_size=3, tokenizer=object())
    assert seen == {"n": 6, "t": 0.0, "m": 5, "b": 3}
    assert r["format_rate"] == 1.0 and r["exact_match_rate"] == 1.0
    with pytest.raises(ValueError, match="tokenizer"):
        evaluate_toolcall(object(), examples)


def test_load_policy_merges_a_lora_adapter(tmp_path, tiny_llama_dir):
    """A checkpoint with a LoRA adapter loads onto its base and gives the adapter model's logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rvpo.model.policy import load_policy, policy_folder

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # make the adapter non-trivial (B starts at zero)
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "checkpoint-3"
    peft_model.save_pretrained(ckpt)
    (ckpt / "trainer_state.json").write_text("{}")
    assert policy_folder(run) == ckpt  # no final/: the latest checkpoint
    x = torch.tensor([[1, 5, 9, 20]])
    want = peft_model(x).logits
    model, tok = load_policy(run, precision="fp32")  # exact logits: no bf16 rounding
    assert not hasattr(model, "peft_config")  # merged into a plain model
    assert torch.allclose(model(x).logits, want, atol=1e-4)
    fresh = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert not torch.allclose(fresh(x).logits, want, atol=1e-3)  # the adapter matters
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        policy_folder(empty)


def test_cli_writes_a_run_dir(tmp_path, tiny_llama_dir, capsys):
    from rvpo.cli import main

    rc = main(["eval", "toolcall", "--model", tiny_llama_dir, "--data", "builtin:test", "--limit", "3",
               "--max-new-tokens", "4", "--out", str(tmp_path), "--json"])
    assert rc == 0
    head = json.loads(capsys.readouterr().out)
    assert head["n"] == 3 and set(head) >= {"format_rate", "exact_match_rate", "mean_correctness", "run_dir"}
    run = tmp_path / head["run_dir"].split("/")[-1]
    lines = (run / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and {"completion", "format", "correctness", "exact_match"} <= json.loads(lines[0]).keys()
    assert json.loads((run / "results.json").read_text())["n"] == 3
    assert set(json.loads((run / "results.json").read_text())) == set(head)  # the command's own keys, not the
    assert not {"metrics", "ci95", "records"} & set(head)                   # task contract's summary of them
    assert main(["eval", "toolcall", "--model", str(tmp_path / "nope"), "--limit", "1"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["eval", "toolcall", "--data", str(tmp_path / "missing.parquet")]) == 2
    assert "--data" in capsys.readouterr().err
