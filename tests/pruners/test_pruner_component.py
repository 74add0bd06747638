"""The ProvencePruner component with the shipped weights: thresholds, edge cases and the output contract."""

import json
from pathlib import Path

import pytest
from haystack import Document
from serialization import assert_pinned, assert_restored

from ragpress.pruners.component import ProvencePruner, titled
from ragpress.scoring.sentences import split_sentences

pytestmark = pytest.mark.integration

# The shipped weights still miss this one (docs/benchmarks.md, "Reranker and pruner"): the answer paragraph
# comes after three copies of its article's other paragraphs. It stays the specification the next weights
# must meet.
UNDER_TRAINED = pytest.mark.xfail(
    reason="the shipped weights still drop this late answer", strict=False
)

EXAMPLES = json.loads((Path(__file__).parent / "fixtures" / "dev_examples.json").read_text())


def as_document(sentences: list[str], doc_id: str) -> Document:
    return Document(id=doc_id, content=" ".join(sentences))


@pytest.fixture(scope="module")
def pruner() -> ProvencePruner:
    component = ProvencePruner()
    component.warm_up()
    return component


@pytest.fixture(scope="module")
def xquad() -> dict:
    return next(e for e in EXAMPLES if e["dataset"] == "xquad")


def test_pruned_text_is_the_kept_sentences_in_original_order(pruner, xquad):
    document = as_document(xquad["passages"][0], "gold")
    out = pruner.run(query=xquad["query"], documents=[document])["documents"][0]
    spans = split_sentences(document.content)
    assert len(out.meta["sentence_scores"]) == len(spans)
    assert out.meta["kept_sentences"] == sorted(out.meta["kept_sentences"])
    assert out.meta["pruned_text"] == " ".join(
        document.content[s:e] for s, e in (spans[i] for i in out.meta["kept_sentences"])
    )
    assert out.content == document.content
    assert 0.0 <= out.score <= 1.0


def test_the_answer_sentence_is_kept_and_most_of_the_paragraph_dropped(pruner, xquad):
    document = as_document(xquad["passages"][0], "gold")
    out = pruner.run(query=xquad["query"], documents=[document])["documents"][0]
    assert set(xquad["gold_sentences"]) <= set(out.meta["kept_sentences"])
    assert len(out.meta["pruned_text"]) < len(document.content)


def test_threshold_zero_keeps_everything_and_one_keeps_nothing_and_higher_keeps_less(pruner, xquad):
    documents = [as_document(p, str(i)) for i, p in enumerate(xquad["passages"])]
    kept = {}
    for threshold in (0.0, 0.05, 0.3, 0.9, 1.0):
        out = pruner.run(query=xquad["query"], documents=documents, threshold=threshold)["documents"]
        kept[threshold] = {(d.id, i) for d in out for i in d.meta["kept_sentences"]}
    assert kept[0.0] == {(d.id, i) for d in documents for i in range(len(split_sentences(d.content)))}
    assert kept[1.0] == set()
    assert kept[0.05] >= kept[0.3] >= kept[0.9]


def test_an_empty_passage_scores_zero_and_keeps_nothing(pruner, xquad):
    documents = [
        Document(id="empty", content=""),
        Document(id="blank", content="  \n "),
        as_document(xquad["passages"][0], "gold"),
    ]
    out = {d.id: d for d in pruner.run(query=xquad["query"], documents=documents)["documents"]}
    for doc_id in ("empty", "blank"):
        assert out[doc_id].score == 0.0
        assert out[doc_id].meta["kept_sentences"] == []
        assert out[doc_id].meta["pruned_text"] == ""
    assert out["gold"].score > 0.0


@UNDER_TRAINED
def test_a_passage_longer_than_the_window_is_scored_in_windows_and_its_late_answer_survives(pruner, xquad):
    filler = [s for p in xquad["passages"][1:] for s in p] * 3  # well over 512 tokens of the same article
    sentences = filler + xquad["passages"][0]
    document = as_document(sentences, "long")
    assert len(pruner._tokenizer(document.content)["input_ids"]) > 1024
    out = pruner.run(query=xquad["query"], documents=[document])["documents"][0]
    assert len(out.meta["sentence_scores"]) == len(split_sentences(document.content))
    gold = {len(filler) + i for i in xquad["gold_sentences"]}
    assert gold <= set(out.meta["kept_sentences"])


def test_a_non_english_passage_gets_scores_without_errors(pruner):
    german = Document(
        content="Der Rhein ist ein Fluss in Europa. Er fließt durch Köln. 東京は日本の首都です。"
    )
    out = pruner.run(query="Durch welche Stadt fließt der Rhein?", documents=[german])["documents"][0]
    assert 0.0 <= out.score <= 1.0
    assert len(out.meta["sentence_scores"]) == len(split_sentences(german.content)) >= 2
    assert all(0.0 <= s <= 1.0 for s in out.meta["sentence_scores"])


def test_stored_sentence_spans_are_preferred_over_the_splitter(pruner, xquad):
    text = " ".join(xquad["passages"][0])
    whole = Document(content=text, meta={"sentences": [[0, len(text)]]})
    out = pruner.run(query=xquad["query"], documents=[whole], threshold=0.0)["documents"][0]
    assert out.meta["kept_sentences"] == [0]
    assert out.meta["pruned_text"] == text


def test_documents_come_back_best_first_and_runtime_top_k_overrides_init(xquad):
    pruner = ProvencePruner(top_k=4)
    documents = [as_document(p, str(i)) for i, p in enumerate(xquad["passages"])]
    out = pruner.run(query=xquad["query"], documents=documents, top_k=2)["documents"]
    assert len(out) == 2
    assert out[0].score >= out[1].score
    assert len(pruner.run(query=xquad["query"], documents=documents)["documents"]) == 4


def test_ranking_by_input_order_keeps_and_scores_only_the_first_top_k(xquad):
    documents = [as_document(p, str(i)) for i, p in enumerate(xquad["passages"])]
    by_relevance = ProvencePruner().run(query=xquad["query"], documents=documents)["documents"]
    by_input = ProvencePruner(top_k=2, ranking="input").run(query=xquad["query"], documents=documents)["documents"]
    assert [d.id for d in by_input] == ["0", "1"]
    scores = {d.id: d.score for d in by_relevance}
    # Batches of other shapes sum in another order: the same score up to float32 rounding, not bit for bit.
    assert [d.score for d in by_input] == pytest.approx([scores["0"], scores["1"]], abs=1e-5)


def test_invalid_parameters_are_rejected_at_init_and_at_run(pruner):
    with pytest.raises(ValueError, match="ranking must be one of relevance, input, fused"):
        ProvencePruner(ranking="bm25")
    with pytest.raises(ValueError, match="ranking must be one of"):
        pruner.run(query="q", documents=[Document(content="x")], ranking="score")
    with pytest.raises(ValueError):
        ProvencePruner(threshold=1.5)
    with pytest.raises(ValueError):
        ProvencePruner(top_k=0)
    with pytest.raises(ValueError):
        ProvencePruner(model="/no/such/weights")
    with pytest.raises(ValueError):
        pruner.run(query="q", documents=[Document(content="x")], threshold=-0.1)


def test_a_passage_longer_than_the_window_gets_a_score_for_every_sentence(xquad):
    pruner = ProvencePruner(max_length=128)  # a small window forces several windows per passage
    sentences = [s for p in xquad["passages"] for s in p]
    document = as_document(sentences, "long")
    assert len(pruner.run(query="x", documents=[])["documents"]) == 0
    out = pruner.run(query=xquad["query"], documents=[document], threshold=0.0)["documents"][0]
    assert len(out.meta["sentence_scores"]) == len(split_sentences(document.content))
    assert all(0.0 < s < 1.0 for s in out.meta["sentence_scores"])
    assert out.meta["pruned_text"] == document.content


def kept_pairs(documents: list[Document]) -> set[tuple[str, int]]:
    return {(d.id, i) for d in documents for i in d.meta["kept_sentences"]}


@pytest.mark.parametrize("example", range(len(EXAMPLES)))
def test_the_relative_rule_keeps_each_query_best_sentence_and_matches_its_absolute_cutoff(pruner, example):
    query, passages = EXAMPLES[example]["query"], EXAMPLES[example]["passages"]
    documents = [as_document(p, str(i)) for i, p in enumerate(passages)]
    scored = pruner.run(query=query, documents=documents, threshold=0.0)["documents"]
    best = max(s for d in scored for s in d.meta["sentence_scores"])
    top = {(d.id, i) for d in scored for i, s in enumerate(d.meta["sentence_scores"]) if s == best}
    assert kept_pairs(pruner.run(query=query, documents=documents, relative_threshold=1.0)["documents"]) == top
    for ratio in (0.2, 0.5):
        relative = pruner.run(query=query, documents=documents, relative_threshold=ratio)["documents"]
        kept = kept_pairs(relative)
        assert top <= kept
        for d in relative:  # meta scores are rounded to 6 places, hence the tolerance
            for i, s in enumerate(d.meta["sentence_scores"]):
                assert (s >= ratio * best - 1e-6) if (d.id, i) in kept else (s < ratio * best + 1e-6)


def test_a_call_cuts_by_the_rule_it_is_given_else_by_the_weights_default(pruner):
    scores = [[0.1, 0.4], [0.2]]  # the best sentence scores 0.4
    absolute, relative = pruner.default_rule()
    assert pruner.cutoff(scores) == pytest.approx(absolute if relative is None else relative * 0.4)
    assert pruner.cutoff(scores, threshold=0.3) == 0.3
    assert pruner.cutoff(scores, relative_threshold=0.5) == pytest.approx(0.2)


def test_on_raw_keep_scores_without_a_rule_the_weights_calibrated_relative_threshold_applies(xquad):
    raw = ProvencePruner(sentence_fusion=False)  # with the fusion, tests/pruners/test_sentence_fusion.py
    raw.warm_up()
    ratio = raw._model.config.default_relative_threshold
    assert ratio is not None and 0.0 < ratio < 1.0
    assert raw.default_rule() == (None, ratio)
    documents = [as_document(p, str(i)) for i, p in enumerate(xquad["passages"])]
    default = raw.run(query=xquad["query"], documents=documents)["documents"]
    explicit = raw.run(query=xquad["query"], documents=documents, relative_threshold=ratio)["documents"]
    assert kept_pairs(default) == kept_pairs(explicit)


def test_a_rule_given_at_run_replaces_the_init_rule(xquad):
    pruner = ProvencePruner(relative_threshold=1.0)
    documents = [as_document(p, str(i)) for i, p in enumerate(xquad["passages"])]
    assert len(kept_pairs(pruner.run(query=xquad["query"], documents=documents)["documents"])) == 1
    everything = pruner.run(query=xquad["query"], documents=documents, threshold=0.0)["documents"]
    assert kept_pairs(everything) == {(d.id, i) for d in everything for i in range(len(d.meta["sentence_scores"]))}


def test_invalid_relative_thresholds_and_two_rules_at_once_are_rejected(pruner):
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="relative_threshold"):
            ProvencePruner(relative_threshold=bad)
        with pytest.raises(ValueError, match="relative_threshold"):
            pruner.run(query="q", documents=[Document(content="x")], relative_threshold=bad)
    with pytest.raises(ValueError, match="not both"):
        ProvencePruner(threshold=0.1, relative_threshold=0.5)
    with pytest.raises(ValueError, match="not both"):
        pruner.run(query="q", documents=[Document(content="x")], threshold=0.1, relative_threshold=0.5)


PRUNER_DEFAULTS = {"model": "ragpress-provence-minilm", "threshold": None, "relative_threshold": None, "top_k": None,
                   "score_threshold": None, "max_length": 512, "batch_size": 16, "quantize": False,
                   "sentence_fusion": True, "ranking": "relevance", "bridge": False, "titles": True,
                   "device": "auto"}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(ProvencePruner(), PRUNER_DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(ProvencePruner, {**PRUNER_DEFAULTS, "relative_threshold": 0.5, "top_k": 5, "score_threshold": 0.2,
                                     "max_length": 256, "batch_size": 4, "quantize": True, "sentence_fusion": False,
                                     "ranking": "input", "bridge": True, "titles": False, "device": "cpu"})


# A chunk far below its document's heading often never names its subject: this one is how the README's question met
# the sample it is asked of, and the pruner dropped the answer until it read the chunk under its title.
CONSTRUCTION = ("## Construction\n\nConstruction began in December 2001. The deck was launched horizontally from both "
                "sides of the valley and met in the middle in May 2004. The bridge was formally opened on 14 December "
                "2004 and carried its first traffic two days later.")


def test_a_chunk_that_never_names_its_subject_is_read_under_its_documents_title(pruner):
    query = "When was the Millau Viaduct opened?"
    titled = Document(content=CONSTRUCTION, meta={"title": "Millau Viaduct"})
    scored = pruner.run(query=query, documents=[titled])["documents"][0]
    assert "formally opened on 14 December 2004" in scored.meta["pruned_text"]
    untitled = pruner.run(query=query, documents=[titled], titles=False)["documents"][0]
    assert scored.score > untitled.score


@pytest.mark.unit
def test_a_passage_is_prefixed_with_its_title_only_when_it_does_not_open_with_it():
    spans = [(0, 10)]
    assert titled(Document(content="Paris is big.", meta={"title": "Paris"}), spans) == ("Paris is big.", spans)
    assert titled(Document(content="# Paris\n\nIt is big.", meta={"title": "Paris"}), spans)[1] == spans
    assert titled(Document(content="It is big.", meta={}), spans) == ("It is big.", spans)
    assert titled(Document(content="It is big.", meta={"title": "Paris"}), spans) == ("Paris\n\nIt is big.", [(7, 17)])
