"""Labelled (query, passage, gold sentences) data for training and evaluating the reranker-pruner.

Every dataset is turned into the same shape: a corpus of ``Passage`` (a list of sentences, so gold sentence
indices stay exact) and a list of ``Query`` (text, relevant passage ids, gold sentence indices per passage).

Dev splits are carved deterministically by hashing a group key: ``sha256("<dataset>:<key>") % 100 < 20``
is dev. The key is the SciFact claim id, the Wikipedia article title for XQuAD and SQuAD (so paragraphs of one
article never sit on both sides), the HotpotQA ``_id`` and the MuSiQue ``id``. SQuAD's articles are XQuAD's
(other paragraphs) plus ten more, so SQuAD is split with XQuAD's hash: an article is dev for both or for
neither, and no XQuAD dev article is trained on through its SQuAD paragraphs. The HotpotQA dev questions
(``hotpotqa_dev``) are dev only. Training never reads a dev query.

Gold sentences: SciFact evidence sentences, the XQuAD and SQuAD sentence(s) holding the answer span,
HotpotQA supporting facts (all human labels); for MuSiQue, whose supports are whole paragraphs, the
sentences of a supporting paragraph that contain a hop's answer (derived, used for training only). SQuAD
2.0's unanswerable questions have no relevant passage: ``Query.answerable`` is False and ``near`` names the
on-topic paragraph they were written beside, which does not answer them.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragpress.scoring.sentences import split_sentences

# What training and calibration read (their train sides); DEV_ONLY sets have no train side.
DATASETS = ("scifact", "xquad", "hotpotqa", "musique", "squad")
DEV_ONLY = ("hotpotqa_dev",)
# Datasets split by another's hash, so shared groups (Wikipedia articles) fall on the same side.
SPLIT_AS = {"squad": "xquad"}
DEV_PERCENT = 20
CALIBRATION_PERCENT = 10  # of the train queries (see is_calibration)


@dataclass(frozen=True)
class Passage:
    pid: str
    sentences: tuple[str, ...]
    title: str = ""  # its article's title where the text does not already open with it (SciFact's does)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def spans(self) -> list[tuple[int, int]]:
        """Character spans of ``sentences`` inside ``text``."""
        spans, start = [], 0
        for sentence in self.sentences:
            spans.append((start, start + len(sentence)))
            start += len(sentence) + 1
        return spans


@dataclass
class Query:
    qid: str
    dataset: str
    text: str
    relevant: list[str]
    # pid -> gold sentence indices; a relevant pid missing here has no sentence labels.
    gold: dict[str, list[int]] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)  # reference answers, for answer F1 (none for SciFact)
    answerable: bool = True
    near: list[str] = field(default_factory=list)  # unanswerable: the on-topic passages that do not answer


@dataclass
class Dataset:
    name: str
    passages: dict[str, Passage]
    queries: list[Query]


def is_dev(dataset: str, key: str) -> bool:
    if dataset in DEV_ONLY:
        return True
    dataset = SPLIT_AS.get(dataset, dataset)
    digest = hashlib.sha256(f"{dataset}:{key}".encode()).hexdigest()
    return int(digest, 16) % 100 < DEV_PERCENT


def default_root() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def load(name: str, root: Path | None = None) -> Dataset:
    root = root or default_root()
    loaders = {"scifact": _scifact, "xquad": _xquad, "hotpotqa": _hotpotqa, "musique": _musique,
               "squad": _squad, "hotpotqa_dev": _hotpotqa_dev}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS + DEV_ONLY}")
    return loaders[name](root)


def split(dataset: Dataset, dev: bool) -> list[Query]:
    return [q for q in dataset.queries if _dev_of(q) == dev]


def _dev_of(query: Query) -> bool:
    return is_dev(query.dataset, group_key(query))


def sample(queries: list[Query], count: int | None) -> list[Query]:
    """``count`` of ``queries`` in a fixed order that mixes articles and labels (by a hash of the question id),
    so the first hundred of a dataset stored article by article are not all about one article."""
    ordered = sorted(queries, key=lambda q: hashlib.sha256(f"sample:{q.qid}".encode()).hexdigest())
    return ordered[:count]


def is_calibration(query: Query) -> bool:
    """A fixed share of the train queries, held out of training to set the default sentence thresholds."""
    return is_calibration_key(query.dataset, group_key(query))


def is_calibration_key(dataset: str, key: str) -> bool:
    digest = hashlib.sha256(f"calibration:{dataset}:{key}".encode()).hexdigest()
    return int(digest, 16) % 100 < CALIBRATION_PERCENT


def group_key(query: Query) -> str:
    """The key a split is carved by; XQuAD and SQuAD group by article (the qid is "<article>/<question id>")."""
    return query.qid.split("/")[0] if query.dataset in ("xquad", "squad") else query.qid


def _clean(sentences: list[str]) -> tuple[str, ...]:
    return tuple(" ".join(s.split()) for s in sentences if s.strip())


def _scifact(root: Path) -> Dataset:
    base = root / "scifact"
    passages: dict[str, Passage] = {}
    for line in (base / "corpus.jsonl").read_text().splitlines():
        record = json.loads(line)
        # The title is sentence 0, so evidence index i becomes i + 1.
        passages[str(record["doc_id"])] = Passage(
            str(record["doc_id"]), (record["title"], *record["abstract"])
        )
    qrels: dict[str, list[str]] = {}
    for line in (base / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, pid, score = line.split("\t")
        if int(score) > 0 and pid in passages:
            qrels.setdefault(qid, []).append(pid)
    queries = []
    for line in (base / "claims_train.jsonl").read_text().splitlines():
        record = json.loads(line)
        qid = str(record["id"])
        if qid not in qrels:
            continue
        gold = {
            pid: sorted({i + 1 for ev in evidences for i in ev["sentences"]})
            for pid, evidences in record["evidence"].items()
            if pid in passages
        }
        queries.append(Query(qid, "scifact", record["claim"], qrels[qid], gold))
    return Dataset("scifact", passages, queries)


def _xquad(root: Path) -> Dataset:
    return _squad_format("xquad", [root / "xquad_en" / "xquad.en.json"])


def _squad(root: Path) -> Dataset:
    return _squad_format("squad", sorted((root / "squad").glob("*.json")))


def _squad_format(name: str, files: list[Path]) -> Dataset:
    """Articles in SQuAD's JSON format; a paragraph is a passage of exact sentence slices of its context."""
    passages: dict[str, Passage] = {}
    queries = []
    for path in files:
        for article in json.loads(path.read_text())["data"]:
            for p_index, paragraph in enumerate(article["paragraphs"]):
                pid = f"{article['title']}#{p_index}"
                context = paragraph["context"]
                spans = split_sentences(context)
                passages[pid] = Passage(pid, tuple(context[s:e] for s, e in spans), article["title"])
                queries += [_squad_query(name, article["title"], pid, spans, qa) for qa in paragraph["qas"]]
    return Dataset(name, passages, queries)


def _squad_query(name: str, title: str, pid: str, spans: list[tuple[int, int]], qa: dict) -> Query:
    qid = f"{title}/{qa['id']}"
    if qa.get("is_impossible"):
        return Query(qid, name, qa["question"], [], answerable=False, near=[pid])
    answers = [a["text"] for a in qa["answers"]]
    return Query(qid, name, qa["question"], [pid], {pid: _answer_sentences(spans, qa["answers"])}, answers)


def _answer_sentences(spans: list[tuple[int, int]], answers: list[dict]) -> list[int]:
    gold = set()
    for answer in answers:
        start = answer["answer_start"]
        end = start + len(answer["text"])
        gold |= {i for i, (s, e) in enumerate(spans) if s < end and start < e}
    return sorted(gold)


def _parse(value: object) -> object:
    # The HippoRAG files store nested lists as Python literals inside strings.
    return ast.literal_eval(value) if isinstance(value, str) else value


def _hotpotqa(root: Path) -> Dataset:
    records = json.loads((root / "hipporag_mini" / "hotpotqa_train.json").read_text())
    passages: dict[str, Passage] = {}
    corpus = json.loads((root / "hipporag_mini" / "hotpotqa_train_corpus.json").read_text())
    for title, sentences in corpus.items():
        passages[title] = Passage(title, _clean(sentences), title)
    queries = []
    for record in records:
        context = {title: _clean(sents) for title, sents in _parse(record["context"])}
        for title, sents in context.items():
            passages.setdefault(title, Passage(title, sents, title))
        gold = _supporting(passages, _parse(record["supporting_facts"]))
        queries.append(
            Query(record["_id"], "hotpotqa", record["question"], sorted(gold), gold, [str(record["answer"])])
        )
    return Dataset("hotpotqa", passages, queries)


def _supporting(passages: dict[str, Passage], facts: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """HotpotQA's supporting facts as gold sentence indices per passage (facts past a passage's end dropped)."""
    gold: dict[str, set[int]] = {}
    for title, index in facts:
        if title in passages and index < len(passages[title].sentences):
            gold.setdefault(title, set()).add(index)
    return {title: sorted(indices) for title, indices in gold.items()}


def _hotpotqa_dev(root: Path) -> Dataset:
    """HotpotQA dev (distractor setting) in the Hugging Face column layout; every question is dev."""
    records = json.loads((root / "hotpotqa_dev" / "hotpotqa_dev_distractor_100.json").read_text())
    passages: dict[str, Passage] = {}
    queries = []
    for number, record in enumerate(records):
        context = record["context"]
        for title, sentences in zip(context["title"], context["sentences"], strict=True):
            passages.setdefault(title, Passage(title, _clean(sentences), title))
        facts = record["supporting_facts"]
        gold = _supporting(passages, zip(facts["title"], facts["sent_id"], strict=True))
        queries.append(Query(f"hotpotqa_dev:{number}", "hotpotqa_dev", record["question"], sorted(gold), gold,
                             [str(record["answer"])]))
    return Dataset("hotpotqa_dev", passages, queries)


def _musique(root: Path) -> Dataset:
    records = json.loads((root / "hipporag_mini" / "musique_train.json").read_text())
    passages: dict[str, Passage] = {}
    queries = []
    for record in records:
        hops = _parse(record["question_decomposition"])
        relevant, gold = [], {}
        for paragraph in _parse(record["paragraphs"]):
            text = paragraph["paragraph_text"]
            pid = f"{paragraph['title']}::{hashlib.sha1(text.encode()).hexdigest()[:8]}"
            sentences = tuple(text[s:e] for s, e in split_sentences(text))
            passages.setdefault(pid, Passage(pid, sentences, paragraph["title"]))
            if paragraph["is_supporting"]:
                relevant.append(pid)
                answers = [
                    h["answer"].lower() for h in hops if h.get("paragraph_support_idx") == paragraph["idx"]
                ]
                hits = [i for i, s in enumerate(sentences) if any(a in s.lower() for a in answers)]
                if hits:
                    gold[pid] = hits
        answers = [str(record["answer"]), *map(str, _parse(record.get("answer_aliases") or []))]
        queries.append(Query(record["id"], "musique", record["question"], relevant, gold, answers))
    return Dataset("musique", passages, queries)
