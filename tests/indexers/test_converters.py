"""Converters: each supported format becomes clean text; anything else is refused with a reason."""

from __future__ import annotations

import io
import zipfile

import pytest
from haystack import Document
from sample_files import docx_file, text_pdf
from serialization import assert_pinned, assert_restored

from ragpress.indexers import converters
from ragpress.indexers.converters import DOCX, ConversionError, TextConverter, convert, file_to_text, file_type
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.unit


def _zip_without_word() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "a zip, but no Word document inside")
    return out.getvalue()


def test_html_keeps_prose_and_headings_and_drops_scripts_and_navigation() -> None:
    html = ("<html><head><script>alert(1)</script></head><body><nav>Menu</nav><h2>Title</h2>"
            "<p>First <b>bold</b> para.</p><footer>foot</footer></body></html>")
    assert convert(html, "text/html", "page.html") == "## Title\n\nFirst bold para."


def test_markdown_keeps_headings_and_joins_soft_line_breaks() -> None:
    assert convert("# Top\n\nOne line\nsame paragraph.", "text/markdown", "a.md") == "# Top\n\nOne line same paragraph."


def test_pdf_text_is_extracted() -> None:
    assert "Hello PDF world" in convert(text_pdf(["Hello PDF world"]), "application/pdf", "a.pdf")


def test_a_corrupt_pdf_is_refused_with_its_name() -> None:
    with pytest.raises(ConversionError, match=r"broken\.pdf: not a readable PDF"):
        convert(b"%PDF-1.4 garbage", "application/pdf", "broken.pdf")


def test_docx_keeps_headings_paragraphs_and_table_rows_in_order() -> None:
    data = docx_file("Starters", ["Feed it daily.", "Keep it warm."], (("Flour", "Water"), ("50", "50")))
    assert convert(data, DOCX, "s.docx") == "# Starters\n\nFeed it daily.\n\nKeep it warm.\n\nFlour | Water\n50 | 50"


def test_a_docx_cell_merged_across_columns_is_read_once() -> None:
    from docx import Document as WordDocument

    document = WordDocument()
    table = document.add_table(rows=2, cols=2)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Both columns"
    table.cell(1, 0).text, table.cell(1, 1).text = "left", "right"
    out = io.BytesIO()
    document.save(out)
    assert convert(out.getvalue(), DOCX, "m.docx") == "Both columns\nleft | right"


@pytest.mark.parametrize("data", [b"PK\x03\x04 not really a zip", b"plain text, no zip at all", _zip_without_word()])
def test_a_file_that_is_no_docx_is_refused_with_its_name(data: bytes) -> None:
    with pytest.raises(ConversionError, match=r"broken\.docx: not a readable DOCX file"):
        convert(data, DOCX, "broken.docx")


def test_a_docx_that_would_unpack_past_the_limit_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converters, "MAX_DOCX_UNPACKED_BYTES", 10_000)
    with pytest.raises(ConversionError, match=r"big\.docx: unpacks to [\d,]+ bytes; the limit is 10,000"):
        convert(docx_file(), DOCX, "big.docx")


def test_a_password_protected_pdf_is_refused_with_what_to_do() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(["secret"]))))
    writer.encrypt("pw", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(ConversionError, match=r"locked\.pdf: the PDF is password-protected"):
        convert(out.getvalue(), "application/pdf", "locked.pdf")


def test_a_pdf_without_a_text_layer_says_it_needs_ocr() -> None:
    with pytest.raises(ConversionError, match=r"scan\.pdf: no text after conversion \(a scanned PDF"):
        file_to_text(text_pdf([]), "scan.pdf")


@pytest.mark.parametrize(("name", "declared", "expected"), [
    ("docs/guide.MD", "application/octet-stream", "text/markdown"),  # the suffix says, whatever was declared
    ("report", "application/pdf", "application/pdf"),  # no suffix: the declared type
    ("notes", "text/plain; charset=latin1", "text/plain"),
])
def test_an_uploads_type_comes_from_its_suffix_else_its_declared_type(name: str, declared: str, expected: str) -> None:
    assert file_type(name, declared) == expected


def test_an_unsupported_upload_names_its_suffix_and_declared_type() -> None:
    with pytest.raises(ConversionError, match=r"sheet\.xlsx: unsupported file type \('\.xlsx', sent as 'application/"):
        file_type("sheet.xlsx", "application/vnd.ms-excel")


def test_a_declared_charset_decodes_a_text_upload() -> None:
    assert file_to_text("café crème".encode("latin-1"), "menu.txt", "text/plain; charset=latin1") == (
        "café crème", "text/plain")


@pytest.mark.parametrize(("declared", "message"), [
    (None, r"menu\.txt: not valid UTF-8 \(byte 3\).*declare its charset"),
    ("text/plain; charset=utf-8", r"menu\.txt: not valid utf-8 \(byte 3\), though declared so"),
    ("text/plain; charset=klingon", r"menu\.txt: unknown charset 'klingon'"),
])
def test_a_wrong_encoding_is_a_clear_error(declared: str | None, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        file_to_text("café".encode("latin-1"), "menu.txt", declared)


LATIN1_PAGE = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1" />'
               "</head><body><p>Caf\u00e9 cr\u00e8me, served daily.</p></body></html>")


def test_an_html_page_that_is_not_utf8_is_read_in_the_charset_its_meta_declares() -> None:
    assert convert(LATIN1_PAGE.encode("latin-1"), "text/html", "menu.html") == "Café crème, served daily."
    assert file_to_text(LATIN1_PAGE.encode("latin-1"), "menu.html")[0] == "Café crème, served daily."


def test_a_page_in_utf8_is_read_as_utf8_whatever_its_meta_says() -> None:
    # pages often declare one charset and are saved in another; valid UTF-8 is never re-read as Latin-1
    assert convert(LATIN1_PAGE.encode("utf-8"), "text/html", "menu.html") == "Café crème, served daily."


def test_a_meta_charset_counts_only_for_html() -> None:
    with pytest.raises(ConversionError, match="not valid UTF-8"):
        convert(LATIN1_PAGE.encode("latin-1"), "text/plain", "menu.txt")


def test_invalid_utf8_bytes_are_refused_with_a_fix() -> None:
    with pytest.raises(ConversionError, match=r"not valid UTF-8.*iconv"):
        convert("café".encode("latin-1"), "text/plain", "latin.txt")


def test_binary_text_is_refused() -> None:
    with pytest.raises(ConversionError, match="NUL bytes"):
        convert("abc\x00def", "text/plain", "bin.txt")


def test_the_component_reports_failures_without_failing_the_batch() -> None:
    result = TextConverter().run(documents=[
        Document(content="Plain text.", meta={"doc_id": "ok"}),
        Document(content="zip", meta={"doc_id": "bad", "content_type": "application/zip"}),
        Document(content="   ", meta={"doc_id": "empty"}),
    ])
    assert [d.content for d in result["documents"]] == ["Plain text."]
    assert [f["doc_id"] for f in result["failed"]] == ["bad", "empty"]
    assert "content_type" not in result["documents"][0].meta


def test_yaml_round_trip_gives_the_same_outputs() -> None:
    from haystack import Pipeline

    pipeline = Pipeline()
    pipeline.add_component("converter", TextConverter(default_content_type="text/markdown"))
    loaded = load_pipeline(pipeline.dumps())
    doc = [Document(content="# H\n\ntext", meta={"doc_id": "x"})]
    assert loaded.run({"converter": {"documents": doc}}) == pipeline.run({"converter": {"documents": doc}})


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(TextConverter(), {"default_content_type": "text/plain"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(TextConverter, {"default_content_type": "text/markdown"})
