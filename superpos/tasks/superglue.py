"""The six SuperGLUE tasks of the paper (§4.1): rows from ``aps/super_glue`` or the release JSONL files.

MultiRC is one example per (question, answer option), grouped by question id for EM; the release files
(nested passage -> questions -> answers) are flattened into the hub's rows. COPA says whether it asks for
the cause or the effect.
"""
from __future__ import annotations

import re

SUPERGLUE_HUB = "aps/super_glue"

_MARKUP = re.compile(r"<b>\s*Sent \d+:\s*</b>|<br\s*/?>|</?b>")


def multirc_input(row: dict) -> str:
    """``question: … answer: … paragraph: …`` (paragraph last, so truncation cuts the passage only);
    the release's ``<b>Sent 1: </b>…<br>`` markup is removed, as T5's preprocessing does."""
    paragraph = " ".join(_MARKUP.sub(" ", row["paragraph"]).split())
    return f"question: {' '.join(row['question'].split())} answer: {' '.join(row['answer'].split())} paragraph: {paragraph}"


def multirc_rows(release_row: dict) -> list[dict]:
    """One SuperGLUE release MultiRC line (a passage with its questions) -> the hub's flat rows."""
    passage = release_row["passage"]
    return [{"paragraph": passage["text"], "question": q["question"], "answer": a["text"],
             "label": a.get("label", -1),
             "idx": {"paragraph": release_row["idx"], "question": q["idx"], "answer": a["idx"]}}
            for q in passage["questions"] for a in q["answers"]]


def choice_input(questions: dict[str, str]):
    """COPA-style formatter: ``premise: … question: <what is asked> choice1: … choice2: …``."""
    def fmt(row: dict) -> str:
        q = questions.get(row["question"], row["question"])
        return (f"premise: {' '.join(row['premise'].split())} question: {q} "
                f"choice1: {' '.join(row['choice1'].split())} choice2: {' '.join(row['choice2'].split())}")
    return fmt


COPA_QUESTIONS = {"cause": "what was the cause?", "effect": "what happened as a result?"}

SUPERGLUE_SPECS: dict[str, dict] = {
    "multirc": dict(
        display_name="MultiRC", description="Multi-sentence reading comprehension: is this answer option "
        "correct? One example per option, EM per question (F1a/EM)",
        label_names=("False", "True"), label_words=("false", "true"), metric_names=("f1a", "em"),
        formatter=multirc_input, grouped=True, official_rows=multirc_rows, sizes=(27_243, 4_848)),
    "rte": dict(
        display_name="RTE", description="Recognizing Textual Entailment (Acc.)",
        label_names=("entailment", "not_entailment"), metric_names=("accuracy",),
        fields=(("premise", "premise"), ("hypothesis", "hypothesis")), sizes=(2_490, 277)),
    "cb": dict(
        display_name="CB", description="CommitmentBank: entailment / contradiction / neutral (macro-F1/Acc.)",
        label_names=("entailment", "contradiction", "neutral"), metric_names=("macro_f1", "accuracy"),
        fields=(("premise", "premise"), ("hypothesis", "hypothesis")), sizes=(250, 56)),
    "copa": dict(
        display_name="COPA", description="Choice of Plausible Alternatives: which choice is the cause/effect (Acc.)",
        label_names=("choice1", "choice2"), label_words=("1", "2"), metric_names=("accuracy",),
        formatter=choice_input(COPA_QUESTIONS), sizes=(400, 100)),
    "wic": dict(
        display_name="WiC", description="Words in Context: same sense of the word in both sentences? (Acc.)",
        label_names=("False", "True"), label_words=("false", "true"), metric_names=("accuracy",),
        fields=(("word", "word"), ("sentence1", "sentence1"), ("sentence2", "sentence2")), sizes=(5_428, 638)),
    "boolq": dict(
        display_name="BoolQ", description="Boolean Questions: yes/no question about a passage (Acc.)",
        label_names=("False", "True"), label_words=("no", "yes"), metric_names=("accuracy",),
        fields=(("question", "question"), ("passage", "passage")), sizes=(9_427, 3_270)),
}

for _name, _spec in SUPERGLUE_SPECS.items():
    _spec.setdefault("label_words", _spec["label_names"])
    _spec.update(benchmark="super_glue", hub_id=SUPERGLUE_HUB, hub_config=_name, official_dir=_spec["display_name"])
