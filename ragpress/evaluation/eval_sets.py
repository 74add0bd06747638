"""Eval sets read from files a user has: SQuAD JSON (1.1 or 2.0), HotpotQA records, or a BEIR folder.

Each becomes the documents to ingest and the questions to ask. A document opens with its title as a Markdown
heading, as a user's own files usually do, so ingestion gives its units that title. A question keeps what its
format labels: reference answers, whether it can be answered, the ids of the documents that hold the evidence,
and the text of the evidence sentences (the gold sentences the pruner should keep).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragpress.scoring.sentences import split_sentences

FORMATS = ("squad", "hotpot", "beir")


class EvalSetInvalid(ValueError):
    """The data cannot be read in the format named; the message says which file and what was expected."""


@dataclass(frozen=True)
class EvalQuestion:
    qid: str
    text: str
    answers: tuple[str, ...] = ()  # reference answers; none for an unanswerable or a retrieval-only question
    answerable: bool = True
    relevant: frozenset[str] = frozenset()  # ids of the documents holding the evidence
    gold_sentences: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalSet:
    name: str
    documents: list[dict[str, Any]]  # request bodies: {"id", "text", "meta"}
    questions: list[EvalQuestion]

    def sample(self, limit: int | None, seed: int = 0) -> list[EvalQuestion]:
        """``limit`` questions drawn evenly at random (the same ones on every run), in file order; all without one."""
        if limit is None or limit >= len(self.questions):
            return list(self.questions)
        chosen = set(random.Random(seed).sample(range(len(self.questions)), limit))
        return [q for i, q in enumerate(self.questions) if i in chosen]


def load(path: Path, fmt: str) -> EvalSet:
    """The eval set at ``path`` (a file, or for BEIR a folder) read as ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise EvalSetInvalid(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if not path.exists():
        raise EvalSetInvalid(f"{path} does not exist.")
    reader = {"squad": _squad, "hotpot": _hotpot, "beir": _beir}[fmt]
    try:
        found = reader(path)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        if isinstance(exc, EvalSetInvalid):
            raise
        raise EvalSetInvalid(f"{path} is not {fmt} data as ragpress reads it ({exc.__class__.__name__}: {exc}); "
                             "see `ragpress eval --help` for the formats.") from None
    if not found.questions:
        raise EvalSetInvalid(f"{path} holds no questions in the {fmt} format.")
    return found


def _document(doc_id: str, title: str, body: str) -> dict[str, Any]:
    return {"id": doc_id, "text": f"# {title}\n\n{body}" if title else body, "meta": {"title": title} if title else {}}


def _json(path: Path) -> Any:
    if path.is_dir():
        raise EvalSetInvalid(f"{path} is a folder; this format reads one JSON file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalSetInvalid(f"{path} is not UTF-8 JSON: {exc}") from None


# --- SQuAD ------------------------------------------------------------------------------------------
def _squad(path: Path) -> EvalSet:
    """One document per article (its paragraphs in order); SQuAD 2.0's ``is_impossible`` questions are the
    unanswerable ones, whose only "relevant" document is none."""
    documents, questions = [], []
    for article in _json(path)["data"]:
        title = str(article["title"]).replace("_", " ")
        contexts = [str(p["context"]) for p in article["paragraphs"]]
        documents.append(_document(title, title, "\n\n".join(contexts)))
        for paragraph, context in zip(article["paragraphs"], contexts, strict=True):
            for qa in paragraph["qas"]:
                questions.append(_squad_question(title, context, qa))
    return EvalSet(path.stem, documents, questions)


def _squad_question(title: str, context: str, qa: dict[str, Any]) -> EvalQuestion:
    answers = [a for a in qa.get("answers", []) if str(a.get("text", "")).strip()]
    if qa.get("is_impossible") or not answers:
        return EvalQuestion(str(qa["id"]), str(qa["question"]), answerable=False)
    spans = split_sentences(context)
    gold = {context[s:e] for a in answers for s, e in spans
            if s < int(a["answer_start"]) + len(a["text"]) and int(a["answer_start"]) < e}
    return EvalQuestion(str(qa["id"]), str(qa["question"]), tuple(dict.fromkeys(str(a["text"]) for a in answers)),
                        True, frozenset({title}), tuple(sorted(gold)))


# --- HotpotQA ---------------------------------------------------------------------------------------
def _hotpot(path: Path) -> EvalSet:
    """Every paragraph of every record's context is a document (named by its title, once); the supporting
    facts are the gold sentences. Reads the original row layout and the Hugging Face column layout."""
    paragraphs: dict[str, list[str]] = {}
    questions = []
    records = _json(path)
    for number, record in enumerate(records if isinstance(records, list) else records["data"]):
        context = _pairs(record["context"], "title", "sentences")
        for title, sentences in context:
            paragraphs.setdefault(str(title), [str(s) for s in sentences])
        facts = _pairs(record["supporting_facts"], "title", "sent_id")
        gold = [paragraphs[str(t)][int(i)] for t, i in facts
                if str(t) in paragraphs and int(i) < len(paragraphs[str(t)])]
        questions.append(EvalQuestion(str(record.get("_id", record.get("id", number))), str(record["question"]),
                                      (str(record["answer"]),), True, frozenset(str(t) for t, _ in facts),
                                      tuple(s.strip() for s in gold)))
    documents = [_document(title, title, "".join(sentences).strip()) for title, sentences in paragraphs.items()]
    return EvalSet(path.stem, documents, questions)


def _pairs(value: Any, first: str, second: str) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):  # column layout: {"title": [...], "sentences": [...]}
        return list(zip(value[first], value[second], strict=True))
    return [(pair[0], pair[1]) for pair in value]


# --- BEIR -------------------------------------------------------------------------------------------
def _beir(path: Path) -> EvalSet:
    """``corpus.jsonl``, the queries (``queries.jsonl``, or SciFact's ``claims_*.jsonl`` whose evidence sentences
    become gold sentences) and ``qrels/*.tsv`` (test, else dev, else train); only queries with judgements."""
    if not path.is_dir():
        raise EvalSetInvalid(f"{path} is not a folder: a BEIR set is a folder with corpus.jsonl, the queries and "
                             "qrels/.")
    corpus = {str(r.get("_id", r.get("doc_id"))): r for r in _jsonl(path / "corpus.jsonl")}
    qrels = _qrels(path)
    documents = [_document(doc_id, str(r.get("title") or ""), _abstract(r)) for doc_id, r in corpus.items()]
    questions = []
    for record, text in _queries(path):
        qid = str(record.get("_id", record.get("id")))
        relevant = frozenset(d for d in qrels.get(qid, ()) if d in corpus)
        if relevant:
            questions.append(EvalQuestion(qid, text, answerable=True, relevant=relevant,
                                          gold_sentences=_evidence(record, corpus)))
    return EvalSet(path.name, documents, questions)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise EvalSetInvalid(f"{path} is missing.")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _abstract(record: dict[str, Any]) -> str:
    text = record.get("text", record.get("abstract", ""))
    return " ".join(str(s) for s in text) if isinstance(text, list) else str(text)


def _queries(path: Path) -> list[tuple[dict[str, Any], str]]:
    if (path / "queries.jsonl").is_file():
        return [(r, str(r["text"])) for r in _jsonl(path / "queries.jsonl")]
    claims = sorted(path.glob("claims_*.jsonl"))
    if not claims:
        raise EvalSetInvalid(f"{path} has neither queries.jsonl nor claims_*.jsonl.")
    return [(r, str(r["claim"])) for r in _jsonl(claims[0])]


def _qrels(path: Path) -> dict[str, set[str]]:
    found = [path / "qrels" / f"{split}.tsv" for split in ("test", "dev", "train")]
    chosen = next((f for f in found if f.is_file()), None)
    if chosen is None:
        raise EvalSetInvalid(f"{path}/qrels has no test.tsv, dev.tsv or train.tsv.")
    relevant: dict[str, set[str]] = {}
    with chosen.open(encoding="utf-8") as rows:
        for row in csv.DictReader(rows, delimiter="\t"):
            if int(row.get("score") or 1) > 0:
                relevant.setdefault(str(row["query-id"]), set()).add(str(row["corpus-id"]))
    return relevant


def _evidence(record: dict[str, Any], corpus: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """SciFact's evidence sentences, by index into the abstract."""
    sentences = []
    for doc_id, sets in (record.get("evidence") or {}).items():
        abstract = corpus.get(str(doc_id), {}).get("abstract")
        if isinstance(abstract, list):
            sentences += [str(abstract[i]) for s in sets for i in s.get("sentences", []) if i < len(abstract)]
    return tuple(dict.fromkeys(sentences))
