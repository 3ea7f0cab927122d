"""GPQA eval: simple-evals' option order and prompt, the lenient extractor, the zip reader, no text leaks.

simple-evals' answer pattern on a response set: tests/test_gpqa_extraction.py. Tests that read the
real data need /work/shared/data/gpqa/gpqa_diamond.zip (../shared from the repository) and skip without it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rvpo.cli import main
from rvpo.evals.gpqa import (
    DEFAULT_ZIP_PASSWORD,
    INCORRECT_COLUMNS,
    QUERY_TEMPLATE,
    GPQADataError,
    GPQAQuestion,
    extract_answer_lenient,
    format_prompt,
    load_gpqa,
    permutations,
    run_gpqa,
    shuffle_options,
)
from rvpo.evals.policy import LocalPolicy

ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpqa" / "gpqa_diamond.zip"
needs_zip = pytest.mark.skipif(not ZIP.is_file(), reason=f"GPQA data absent: no {ZIP} (folder {ZIP.parent})")


def make_tiny_model(path: Path) -> Path:
    """A random 1-layer Llama with a byte-level tokenizer and a chat template (no download; ~1 MB)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("text,letter", [
    ("Answer: C", "C"), ("answer:B", "B"), ("**Answer:** A", "A"), ("Final answer: **D**", "D"),
    ("Thus the answer is (B).", "B"), ("The answer is $C$", "C"), ("So the answer is D because", "D"),
    ("The correct option is C.", "C"), ("I pick choice (A)", "A"), (r"\boxed{D}", "D"), ("**C**", "C"),
    ("C)", "C"), ("(B)", "B"), ("B. 45 kJ", "B"), ("Let me think.\nA", "A"),
    ("A seems wrong. Answer: D\nAnswer: B", "B"),    # the last stated answer wins
    ("Answer: Based on the data, none", None),        # 'B' of 'Based' is not an answer
    ("Because the enthalpy is negative.", None), ("no idea", None), ("", None), ("the answer is a guess", None),
])
def test_lenient_extractor_formats(text, letter):
    assert extract_answer_lenient(text) == letter


def _q(i: int) -> GPQAQuestion:
    return GPQAQuestion(f"rec{i}", f"Synthetic question {i} about widgets?", f"right {i}",
                        (f"wrong {i}a", f"wrong {i}b", f"wrong {i}c"))


def _simple_evals_orders(questions, n_repeats=1):
    """Transcription of simple-evals gpqa_eval.py (ee3b0318): GPQAEval.__init__ and fn's choice order."""
    import random

    examples = [{"Correct Answer": q.correct, **dict(zip(INCORRECT_COLUMNS, q.incorrect, strict=True))} for q in questions]
    rng = random.Random(0)
    examples = examples * n_repeats
    examples = [example | {"permutation": rng.sample(range(4), 4)} for example in examples]
    out = []
    for row in examples:
        choices = [row["Correct Answer"], *(row[c] for c in INCORRECT_COLUMNS)]
        choices = [choices[i] for i in row["permutation"]]
        out.append((choices, "ABCD"[choices.index(row["Correct Answer"])]))
    return out


def test_option_order_is_simple_evals_stream():
    qs = [_q(i) for i in range(30)]
    perms = permutations(60, seed=0)
    ours = [shuffle_options(q, p) for q, p in zip(qs * 2, perms, strict=True)]
    assert ours == _simple_evals_orders(qs, n_repeats=2)
    assert {g for _, g in ours} == set("ABCD")  # the correct option moves around
    assert permutations(5, seed=1) != permutations(5, seed=0) and permutations(5, 1) == permutations(5, 1)
    prompt = format_prompt(qs[0], ours[0][0])[0]["content"]
    assert prompt.startswith("Answer the following multiple choice question. The last line of your response should "
                             "be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one "
                             "of ABCD. Think step by step before answering.\n\nSynthetic question 0")
    assert prompt.endswith("\n\nA) " + "\nB) ".join(ours[0][0][:2]) + "\nC) " + ours[0][0][2] + "\nD) " + ours[0][0][3])
    assert QUERY_TEMPLATE.count("{") == 5


@needs_zip
def test_real_data_orders_match_simple_evals_for_every_question():
    qs = load_gpqa(ZIP)
    ours = [shuffle_options(q, p)[1] for q, p in zip(qs * 4, permutations(4 * len(qs), seed=0), strict=True)]
    assert ours == [g for _, g in _simple_evals_orders(qs, n_repeats=4)]  # 792 of 792


def test_question_repr_hides_text():
    assert repr(_q(3)) == "GPQAQuestion(record_id='rec3')"


@needs_zip
def test_real_zip_reads_in_memory_and_wrong_password_fails_cleanly():
    qs = load_gpqa(ZIP)
    assert len(qs) == 198 and all(q.record_id.startswith("rec") for q in qs)
    assert len({q.record_id for q in qs}) == 198
    with pytest.raises(GPQADataError, match="wrong or missing --zip-password") as e:
        load_gpqa(ZIP, zip_password="nope")
    assert _leaks(qs, str(e.value)) == []


def _write_csv(path: Path, questions: list[GPQAQuestion], drop: str | None = None) -> Path:
    cols = ["Record ID", "Question", "Correct Answer", *INCORRECT_COLUMNS, "Subdomain"]
    cols = [c for c in cols if c != drop]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for q in questions:
            row = {"Record ID": q.record_id, "Question": q.question, "Correct Answer": q.correct,
                   **dict(zip(INCORRECT_COLUMNS, q.incorrect, strict=True)), "Subdomain": "x"}
            w.writerow({k: v for k, v in row.items() if k in cols})
    return path


def test_plain_csv_schema_and_its_errors(tmp_path):
    qs = [_q(i) for i in range(3)]
    assert load_gpqa(_write_csv(tmp_path / "own.csv", qs)) == qs
    with pytest.raises(GPQADataError, match=r"missing column\(s\) \['Incorrect Answer 2'\]"):
        load_gpqa(_write_csv(tmp_path / "bad.csv", qs, drop="Incorrect Answer 2"))
    with pytest.raises(GPQADataError, match="no such file"):
        load_gpqa(tmp_path / "none.csv")


class _Scripted:
    """Answers in a chosen style: the gold letter, or echoes the prompt (question text) back."""

    def __init__(self, questions, seed, style):
        self.gold = [shuffle_options(q, p)[1] for q, p in zip(questions, permutations(len(questions), seed), strict=True)]
        self.style = style

    def answer(self, convs):
        if self.style == "echo":
            return [c[-1]["content"] + "\nAnswer: A" for c in convs]
        return [f"Reasoning...\nAnswer: {g}" for g in self.gold]

    def describe(self):
        return {"kind": "scripted"}


def _all_output_text(run_dir: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(run_dir.rglob("*")) if p.is_file())


def _leaks(questions, text: str) -> list[tuple[str, str]]:
    """(record id, field) of every question/option text found in ``text``; short options such as
    "10" are skipped (they occur by chance). Returns ids only, so a failing assert prints no text."""
    out = []
    for q in questions:
        for name, s in (("question", q.question), ("correct", q.correct),
                        *((f"incorrect{k}", v) for k, v in enumerate(q.incorrect, 1))):
            if len(s) >= 12 and s in text:
                out.append((q.record_id, name))
    return out


@needs_zip
def test_run_gpqa_scores_and_never_stores_text(tmp_path):
    qs = load_gpqa(ZIP, limit=5)
    res = run_gpqa(qs, _Scripted(qs, 3, "gold"), seed=3, out_dir=tmp_path / "gold")
    assert (res.accuracy, res.n, res.n_unparsed) == (1.0, 5, 0) and res.ci_low < 1.0 == res.ci_high
    echo = run_gpqa(qs, _Scripted(qs, 3, "echo"), seed=3, out_dir=tmp_path / "echo")
    assert echo.n_correct == sum(r["gold"] == "A" for r in echo.records)
    for run in (res, echo):
        recs = [json.loads(line) for line in (Path(run.run_dir) / "examples.jsonl").read_text().splitlines()]
        assert [set(r) for r in recs] == [{"record_id", "index", "repeat", "chosen", "gold", "correct"}] * 5
        assert _leaks(qs, _all_output_text(Path(run.run_dir))) == []  # compared in memory only


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@needs_zip
def test_cli_end_to_end_with_a_tiny_local_model(tiny_model, tmp_path, capsys):
    model = tiny_model
    rc = main(["eval", "gpqa", "--data", str(ZIP), "--model", str(model), "--limit", "3",
               "--max-new-tokens", "4", "--out", str(tmp_path / "runs"), "--json"])
    out = capsys.readouterr()
    assert rc == 0
    summary = json.loads(out.out)
    lo, hi = summary["ci95"]
    assert summary["n"] == 3 and lo - 1e-12 <= summary["accuracy"] <= hi <= 1.0
    run_dir = Path(summary["run_dir"])
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "results.json", "examples.jsonl"}
    text = _all_output_text(run_dir) + out.out + out.err
    assert DEFAULT_ZIP_PASSWORD not in text
    assert _leaks(load_gpqa(ZIP, limit=3), text) == []


@needs_zip
def test_cli_wrong_password_is_a_user_error(tmp_path, capsys):
    rc = main(["eval", "gpqa", "--data", str(ZIP), "--zip-password", "x", "--out", str(tmp_path)])
    assert rc == 2 and "zip-password" in capsys.readouterr().err


def test_local_policy_with_a_loaded_model(tiny_model):
    from rvpo.model.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model)
    pol = LocalPolicy(model, tokenizer=tok, max_new_tokens=3, batch_size=2)
    outs = pol.answer([[{"role": "user", "content": "hi"}]] * 3)
    assert len(outs) == 3 and len(set(outs)) == 1  # greedy: same prompt, same answer
    with pytest.raises(ValueError, match="tokenizer"):
        LocalPolicy(model)


@needs_zip
def test_cli_endpoint_policy_that_echoes_the_question_leaks_nothing(tmp_path, capsys):
    from judge_server_fixture import judge_server

    with judge_server("echo", model_name="echo") as srv:  # answers with the prompt: the question text
        rc = main(["eval", "gpqa", "--data", str(ZIP), "--limit", "3", "--policy-base-url", srv.url,
                   "--policy-model", "echo", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (run_dir,) = (tmp_path / "runs").iterdir()
    recs = [json.loads(line) for line in (run_dir / "examples.jsonl").read_text().splitlines()]
    # simple-evals' pattern finds no answer in the echoed prompt ("Answer: $LETTER": L is not A-D)
    assert [r["chosen"] for r in recs] == [None] * 3
    assert _leaks(load_gpqa(ZIP, limit=3), _all_output_text(run_dir) + out.out + out.err) == []
