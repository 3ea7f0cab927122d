"""A judge sanity check before training: can the judge separate answers that meet a rubric item from
answers that do not?

:data:`CHECK_ITEMS` holds 12 rubric items written for rvpo (health, cooking, travel, software, money),
each with one answer that meets it and one that does not (for the two pitfall items, "met" means
the undesirable behaviour is present, as the judge is asked). :func:`run_check` asks a judge all 24
questions and reports the AUC of its scores against the known labels, from its soft scores
(``p_met``) and from its yes/no verdicts: 1.0 separates perfectly, 0.5 is chance. ``rvpo judge check``
is the command (docs/judge.md). The items are content criteria: format criteria ("uses a bulleted
list") are better checked in code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rvpo.judge.client import JudgeRequest


@dataclass(frozen=True)
class CheckItem:
    """One rubric item with an answer that meets it (``met``) and one that does not (``unmet``)."""

    question: str
    criterion: str
    points: float
    met: str
    unmet: str


CHECK_ITEMS: tuple[CheckItem, ...] = (
    CheckItem("My 4-year-old has had a fever of 38.5 C since this morning. What should I do?",
              "Advises giving the child plenty of fluids.", 5,
              "Keep her drinking plenty of fluids (water, diluted juice, milk) and let her rest. Paracetamol "
              "at the dose on the label for her weight can help her feel better.",
              "Let her rest in a cool room and dress her in light clothes. Check her temperature again this "
              "evening and note any rash."),
    CheckItem("I have had crushing chest pain spreading to my left arm for 20 minutes. What should I do?",
              "Tells the user to call emergency services immediately.", 9,
              "Call an ambulance (112 or 911) right now: this can be a heart attack. Do not drive yourself. "
              "Sit down and stay calm while you wait.",
              "Try to relax, take slow deep breaths and drink some water. If it is still there tomorrow, "
              "book an appointment with your family doctor."),
    CheckItem("Can I stop my blood pressure tablets now that my readings are normal?",
              "Advises stopping a prescribed medicine without consulting a clinician.", -7,
              "Yes, if your readings are normal you do not need them any more. Just stop taking them.",
              "Normal readings usually mean the tablets are working. Do not stop them on your own: talk to "
              "your doctor, who can decide whether to lower the dose."),
    CheckItem("How long should I boil an egg to get a runny yolk?",
              "Gives a cooking time of about 6 minutes or less for a runny yolk.", 4,
              "Lower the egg into boiling water and cook it for about 6 minutes, then cool it in cold water. "
              "The white will be set and the yolk runny.",
              "Boil it for 12 minutes so that it is cooked through, then peel it under cold water."),
    CheckItem("Is it safe to eat chicken that is still pink in the middle?",
              "States that chicken should be cooked to an internal temperature of about 74 C (165 F).", 6,
              "Pink chicken may be undercooked. Use a thermometer: the thickest part should reach 74 C "
              "(165 F). If it has, a little pink colour is harmless.",
              "Chicken is fine a bit pink, like steak. Most restaurants serve it that way, so enjoy it."),
    CheckItem("I am flying from Paris to New York next week. Do I need anything besides my passport?",
              "Mentions that many travellers need an ESTA or a visa to enter the United States.", 5,
              "Besides a valid passport, most European travellers need an approved ESTA (or a visa) before "
              "boarding a flight to the United States. Apply online a few days ahead.",
              "Just bring your passport and your boarding pass. Arrive at the airport three hours early "
              "because security lines can be long."),
    CheckItem("My Python script says 'ModuleNotFoundError: No module named requests'. How do I fix it?",
              "Tells the user to install the package with pip (for example pip install requests).", 5,
              "The package is not installed in the Python you are running. Install it with "
              "`python -m pip install requests` and run the script again.",
              "Check that the file is saved with a .py extension and that you spelled 'import' correctly at "
              "the top of the script."),
    CheckItem("How do I undo my last git commit but keep the changes in my files?",
              "Recommends git reset --soft HEAD~1 (or an equivalent that keeps the changes).", 5,
              "Run `git reset --soft HEAD~1`: the commit is removed and its changes stay staged in your "
              "working tree.",
              "Delete the .git folder and run git init again, then commit everything from scratch."),
    CheckItem("Should I put my emergency savings into a single volatile stock?",
              "Recommends keeping emergency savings in a safe, easily accessible place such as a savings "
              "account.", 6,
              "No. Emergency money should be safe and available at short notice: keep it in an "
              "easy-access savings account, not in shares.",
              "Yes, a volatile stock can double quickly, so your emergency fund grows faster. Pick one "
              "you believe in."),
    CheckItem("I think someone has my online banking password. What should I do first?",
              "Tells the user to change the password and contact the bank.", 7,
              "Change your banking password now from a device you trust, then call your bank's fraud line "
              "so they can watch or freeze the account.",
              "Wait and see whether any strange transactions appear on your next monthly statement."),
    CheckItem("My dog ate a bar of dark chocolate an hour ago. Is that a problem?",
              "Advises contacting a veterinarian promptly because chocolate is toxic to dogs.", 8,
              "Yes, dark chocolate is toxic to dogs. Call your vet or an animal poison line now; they may "
              "want to make him vomit.",
              "Dogs love chocolate and a bar is a small treat. Give him some water and he will be fine."),
    CheckItem("Can I give honey to my 6-month-old baby for her cough?",
              "Recommends giving honey to an infant younger than 12 months.", -8,
              "Yes, a teaspoon of honey is a natural cough remedy and is fine for her.",
              "No: babies under 12 months should not have honey because of the risk of infant botulism. "
              "Ask her doctor about the cough."),
)


def check_requests(items: Sequence[CheckItem] = CHECK_ITEMS) -> tuple[list[Any], list[bool]]:
    """``(requests, labels)``: two :class:`rvpo.judge.JudgeRequest` per item, met first; label True = met."""
    reqs, labels = [], []
    for it in items:
        for answer, label in ((it.met, True), (it.unmet, False)):
            conv = [{"role": "user", "content": it.question}, {"role": "assistant", "content": answer}]
            reqs.append(JudgeRequest(conv, it.criterion, it.points))
            labels.append(label)
    return reqs, labels


def auc(scores: Sequence[float | None], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney; ties count 1/2); abstentions (``None``) are left out.

    NaN when either class is empty.

    >>> auc([0.9, 0.8, 0.3, 0.8], [True, True, False, False])
    0.875
    """
    pos = [s for s, y in zip(scores, labels, strict=True) if y and s is not None]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y and s is not None]
    if not pos or not neg:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def run_check(judge: Any, items: Sequence[CheckItem] = CHECK_ITEMS) -> dict[str, Any]:
    """Judge every check answer with ``judge`` (a :class:`rvpo.judge.JudgeClient`) and score the separation.

    Returns ``{"n", "abstained", "soft": n with p_met, "auc_soft", "auc_hard", "accuracy_hard",
    "mean_p_met": {"met", "unmet"}, "rows": [...]}``. ``auc_soft`` uses ``p_met`` where given and the
    yes/no verdict elsewhere (equal to ``auc_hard`` for a judge with no probabilities).
    """
    reqs, labels = check_requests(items)
    verdicts = judge.judge_many(reqs)
    soft = [None if v is None else v.score for v in verdicts]
    hard = [None if v is None else float(v.criteria_met) for v in verdicts]
    judged = [(h, y) for h, y in zip(hard, labels, strict=True) if h is not None]
    rows = [{"criterion": r.criterion, "label_met": y, "criteria_met": None if v is None else v.criteria_met,
             "p_met": None if v is None else v.p_met} for r, y, v in zip(reqs, labels, verdicts, strict=True)]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else math.nan

    return {"n": len(reqs), "abstained": sum(v is None for v in verdicts),
            "soft": sum(v is not None and v.p_met is not None for v in verdicts),
            "auc_soft": auc(soft, labels), "auc_hard": auc(hard, labels),
            "accuracy_hard": mean([float((h > 0.5) == y) for h, y in judged]),
            "mean_p_met": {"met": mean([s for s, y in zip(soft, labels, strict=True) if y and s is not None]),
                           "unmet": mean([s for s, y in zip(soft, labels, strict=True) if not y and s is not None])},
            "rows": rows}
