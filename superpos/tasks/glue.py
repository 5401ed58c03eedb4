"""The seven GLUE tasks of the paper (§4.1): one spec each, rows from ``nyu-mll/glue`` or the release TSVs.

Inputs are T5-style: the task name, then each part named (``mrpc sentence1: … sentence2: …``).
Label words are the hub's class names (targets are single words; distinct first tokens).
"""
from __future__ import annotations

GLUE_HUB = "nyu-mll/glue"

_PAIR = (("sentence1", "sentence1"), ("sentence2", "sentence2"))

# name -> spec (keyword arguments of loading.BenchmarkTask); sizes = (train, validation) rows on the hub.
GLUE_SPECS: dict[str, dict] = {
    "qqp": dict(
        display_name="QQP", description="Quora Question Pairs: are two questions duplicates? (F1/Acc.)",
        label_names=("not_duplicate", "duplicate"), metric_names=("f1", "accuracy"),
        fields=(("question1", "question1"), ("question2", "question2")),
        tsv=dict(rename={"question1": "question1", "question2": "question2"}, label="is_duplicate"),
        sizes=(363_846, 40_430)),
    "qnli": dict(
        display_name="QNLI", description="Question NLI: does the sentence answer the question? (Acc.)",
        label_names=("entailment", "not_entailment"), metric_names=("accuracy",),
        fields=(("question", "question"), ("sentence", "sentence")),
        tsv=dict(rename={"question": "question", "sentence": "sentence"}, label="label"),
        sizes=(104_743, 5_463)),
    "mnli": dict(
        display_name="MNLI", description="MultiNLI: entailment / neutral / contradiction, matched validation (Acc.)",
        label_names=("entailment", "neutral", "contradiction"), metric_names=("accuracy",),
        fields=(("premise", "premise"), ("hypothesis", "hypothesis")),
        hub_splits={"validation": "validation_matched"},
        tsv=dict(rename={"sentence1": "premise", "sentence2": "hypothesis"}, label="gold_label"),
        sizes=(392_702, 9_815)),
    "sst2": dict(
        display_name="SST-2", description="Stanford Sentiment Treebank: sentence sentiment (Acc.)",
        label_names=("negative", "positive"), metric_names=("accuracy",),
        fields=(("sentence", "sentence"),),
        tsv=dict(rename={"sentence": "sentence"}, label="label"), sizes=(67_349, 872)),
    "stsb": dict(
        display_name="STS-B", description="Semantic Textual Similarity: score 0-5 as text, step 0.2 (PCC/ρ)",
        label_names=(), label_words=None, metric_names=("pearson", "spearman"), fields=_PAIR,
        tsv=dict(rename={"sentence1": "sentence1", "sentence2": "sentence2"}, label="score"),
        sizes=(5_749, 1_500)),
    "mrpc": dict(
        display_name="MRPC", description="Microsoft Research Paraphrase Corpus: paraphrase or not (F1/Acc.)",
        label_names=("not_equivalent", "equivalent"), metric_names=("f1", "accuracy"), fields=_PAIR,
        tsv=dict(rename={"#1 String": "sentence1", "#2 String": "sentence2"}, label="Quality"),
        sizes=(3_668, 408)),
    "cola": dict(
        display_name="CoLA", description="Corpus of Linguistic Acceptability: grammatical or not (MCC)",
        label_names=("unacceptable", "acceptable"), metric_names=("mcc",),
        fields=(("sentence", "sentence"),),
        tsv=dict(columns=["source", "label", "original_label", "sentence"], rename={"sentence": "sentence"},
                 label="label"),
        sizes=(8_551, 1_043)),
}

for _name, _spec in GLUE_SPECS.items():
    _spec.setdefault("label_words", _spec["label_names"])
    _spec.update(benchmark="glue", hub_id=GLUE_HUB, hub_config=_name, official_dir=_spec["display_name"])
