"""Which files become which documents: ids that cannot collide, lazy reading that skips what cannot be sent with
its reason, batches within the request limits, and one summary of what was skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import FIXTURES

from ragpress.cli_files import (
    TOO_LARGE,
    UNREADABLE,
    UNSUPPORTED,
    Document,
    NotIngestible,
    Skip,
    Source,
    batches,
    plan,
    read,
    skipped_summary,
)

pytestmark = pytest.mark.unit


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def document(size: int, doc_id: str = "d") -> Document:
    return Document({"id": doc_id}, size)


# --- ids ------------------------------------------------------------------------------------------
def test_a_folders_files_are_named_by_the_folder_and_their_path_in_it(tmp_path: Path) -> None:
    numpy = write(tmp_path / "numpy", {"index.html": "a", "reference/index.html": "b", "user/guide.md": "c"})
    found = plan([numpy])
    assert [s.doc_id for s in found.sources] == ["numpy/index.html", "numpy/reference/index.html",
                                                 "numpy/user/guide.md"]
    assert found.prefixes == ["numpy/"]


def test_a_file_given_directly_is_named_by_its_file_name(tmp_path: Path) -> None:
    write(tmp_path, {"docs/notes.txt": "x"})
    assert [s.doc_id for s in plan([tmp_path / "docs" / "notes.txt"]).sources] == ["notes.txt"]


def test_the_current_folder_is_named_as_it_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "manuals", {"a.txt": "x"})
    monkeypatch.chdir(tmp_path / "manuals")
    assert [s.doc_id for s in plan([Path(".")]).sources] == ["manuals/a.txt"]


def test_hidden_files_and_folders_are_left_out_silently(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {".git/config": "x", ".hidden.txt": "x", "seen.txt": "x"})
    found = plan([docs])
    assert [s.doc_id for s in found.sources] == ["docs/seen.txt"] and found.skipped == []


def test_two_files_that_would_share_an_id_are_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "docs", {"index.html": "a"})
    second = write(tmp_path / "two" / "docs", {"index.html": "b"})
    with pytest.raises(NotIngestible) as refused:
        plan([first, second])
    message = str(refused.value)
    assert "'docs/index.html'" in message and str(first / "index.html") in message
    assert str(second / "index.html") in message and "nothing was sent" in message


def test_the_same_folder_given_twice_is_read_once(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {"a.txt": "x", "b.png": b"\x89PNG"})
    found = plan([docs, tmp_path / "docs" / ".." / "docs"])
    assert [s.doc_id for s in found.sources] == ["docs/a.txt"] and len(found.skipped) == 1


def test_every_file_of_a_folder_counts_as_present_even_if_skipped(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {"a.txt": "x", "b.png": b"\x89PNG"})
    assert plan([docs]).present == {"docs/a.txt", "docs/b.png"}


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotIngestible, match="nope: no such file or directory"):
        plan([tmp_path / "nope"])


# --- reading --------------------------------------------------------------------------------------
def read_one(path: Path, doc_id: str = "x", max_document_bytes: int = 10_000, max_request_bytes: int = 100_000
             ) -> Document | Skip:
    return next(read([Source(path, doc_id)], max_document_bytes, max_request_bytes))


def test_text_is_sent_as_stored_with_its_type_and_its_exact_size(tmp_path: Path) -> None:
    write(tmp_path, {"page.html": "<p>Grüße</p>"})
    got = read_one(tmp_path / "page.html", "site/page.html")
    assert isinstance(got, Document)
    assert got.body == {"id": "site/page.html", "text": "<p>Grüße</p>",
                        "meta": {"content_type": "text/html", "source": str(tmp_path / "page.html")}}
    assert got.size == len(json.dumps(got.body, ensure_ascii=False, separators=(",", ":")).encode())


def test_an_html_page_in_the_charset_its_meta_declares_is_sent_as_text(tmp_path: Path) -> None:
    page = '<meta charset="windows-1252"><p>Gr\u00fc\u00dfe aus K\u00f6ln</p>'
    write(tmp_path, {"page.html": page.encode("cp1252")})
    got = read_one(tmp_path / "page.html")
    assert isinstance(got, Document) and got.body["text"] == page


@pytest.mark.parametrize("name", ["giants-causeway.pdf", "sourdough.docx"])
def test_pdf_and_docx_files_are_sent_as_their_text(name: str) -> None:
    got = read_one(FIXTURES / "files" / name)
    assert isinstance(got, Document) and got.body["meta"]["content_type"] == "text/plain"
    assert len(got.body["text"].split()) > 10


@pytest.mark.parametrize(("content", "kind", "reason"), [
    ("x" * 10_001, TOO_LARGE, "10,000-byte document limit"),
    ("  \n\t ", UNREADABLE, "text is empty"),
    (b"caf\xe9", UNREADABLE, "not valid UTF-8"),
    ("nul\x00byte", UNREADABLE, "NUL"),
])
def test_what_the_server_would_refuse_is_skipped_with_its_reason(tmp_path: Path, content: str | bytes, kind: str,
                                                                reason: str) -> None:
    write(tmp_path, {"f.txt": content})
    got = read_one(tmp_path / "f.txt")
    assert isinstance(got, Skip) and got.kind == kind and reason in got.reason


def test_a_file_whose_name_is_not_utf8_is_skipped_with_what_to_do(tmp_path: Path) -> None:
    path = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt"))
    path.write_text("hello")
    got = read_one(path)
    assert isinstance(got, Skip) and got.reason == "its name is not valid UTF-8: rename it"


def test_a_damaged_pdf_is_skipped_not_fatal(tmp_path: Path) -> None:
    write(tmp_path, {"broken.pdf": b"%PDF-1.4 not really"})
    got = read_one(tmp_path / "broken.pdf")
    assert isinstance(got, Skip) and got.kind == UNREADABLE


def test_a_document_whose_json_would_not_fit_a_request_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, {"quotes.txt": '"' * 6_000})  # within the document limit, twice that as JSON
    got = read_one(tmp_path / "quotes.txt", max_request_bytes=10_000)
    assert isinstance(got, Skip) and got.kind == TOO_LARGE and "request limit" in got.reason


def test_files_are_read_only_when_their_turn_comes(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "first", "b.txt": "second"})
    items = read([Source(tmp_path / "a.txt", "a"), Source(tmp_path / "b.txt", "b")], 100, 1000)
    assert next(items).body["text"] == "first"  # type: ignore[union-attr]
    os.remove(tmp_path / "b.txt")
    late = next(items)
    assert isinstance(late, Skip) and "cannot be read" in late.reason


# --- batches --------------------------------------------------------------------------------------
def sizes(groups: list[list[Document]]) -> list[int]:
    return [len(group) for group in groups]


def test_batches_hold_at_most_the_document_count() -> None:
    assert sizes(list(batches((document(10) for _ in range(2_500)), 1_000, 10**9))) == [1_000, 1_000, 500]


def test_a_batch_body_stays_within_the_byte_limit_exactly() -> None:
    envelope = len(b'{"documents":[]}')
    limit = envelope + 3 * 100 + 2  # three documents and two commas fit exactly
    assert sizes(list(batches((document(100) for _ in range(7)), 1_000, limit))) == [3, 3, 1]
    assert sizes(list(batches((document(100) for _ in range(7)), 1_000, limit - 1))) == [2, 2, 2, 1]


def test_the_body_a_batch_is_measured_for_is_the_body_sent() -> None:
    docs = [Document(body, len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()))
            for body in ({"id": "a", "text": "é\"\n"}, {"id": "b", "text": "plain"})]
    sent = json.dumps({"documents": [d.body for d in docs]}, ensure_ascii=False, separators=(",", ":")).encode()
    assert sizes(list(batches(docs, 10, len(sent)))) == [2]
    assert sizes(list(batches(docs, 10, len(sent) - 1))) == [1, 1]


def test_batches_are_filled_as_documents_come() -> None:
    taken: list[int] = []

    def documents() -> object:
        for n in range(5):
            taken.append(n)
            yield document(1)

    first = next(batches(documents(), 2, 10**6))  # type: ignore[arg-type]
    assert sizes([first]) == [2] and taken == [0, 1]


# --- the skipped summary --------------------------------------------------------------------------
def test_skipped_files_are_one_summary_of_counts_by_type() -> None:
    skipped = [Skip(Path(f"p{n}.png"), UNSUPPORTED, "") for n in range(12)]
    skipped += [Skip(Path(f"d{n}.json"), UNSUPPORTED, "") for n in range(8)]
    lines = skipped_summary(skipped)
    assert lines[0] == "skipped 20 files (--verbose lists them):"
    assert lines[1].startswith("  20 not supported: 12 .png, 8 .json (supported are ")
    assert ".docx" in lines[1] and ".pdf" in lines[1] and len(lines) == 2


def test_each_kind_of_skip_is_its_own_line_and_verbose_lists_every_file() -> None:
    skipped = [Skip(Path("Makefile"), UNSUPPORTED, "type '' is not supported"),
               Skip(Path("big.txt"), TOO_LARGE, "more than the limit"),
               Skip(Path("scan.pdf"), UNREADABLE, "no text")]
    lines = skipped_summary(skipped, verbose=True)
    assert lines[0] == "skipped 3 files:"
    assert lines[1].startswith("  1 not supported: 1 (no extension)")
    assert lines[2:4] == ["  1 too large: 1 .txt", "  1 unreadable: 1 .pdf"]
    assert lines[4:] == ["  Makefile: type '' is not supported", "  big.txt: more than the limit",
                         "  scan.pdf: no text"]


def test_nothing_skipped_says_nothing() -> None:
    assert skipped_summary([]) == []
