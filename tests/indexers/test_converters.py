"""Converters: each supported format becomes clean text; anything else is refused with a reason."""

from __future__ import annotations

import pytest
from haystack import Document
from serialization import assert_pinned, assert_restored

from ragpress.indexers.converters import ConversionError, TextConverter, convert
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.unit


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_html_keeps_prose_and_headings_and_drops_scripts_and_navigation() -> None:
    html = ("<html><head><script>alert(1)</script></head><body><nav>Menu</nav><h2>Title</h2>"
            "<p>First <b>bold</b> para.</p><footer>foot</footer></body></html>")
    assert convert(html, "text/html", "page.html") == "## Title\n\nFirst bold para."


def test_markdown_keeps_headings_and_joins_soft_line_breaks() -> None:
    assert convert("# Top\n\nOne line\nsame paragraph.", "text/markdown", "a.md") == "# Top\n\nOne line same paragraph."


def test_pdf_text_is_extracted() -> None:
    assert "Hello PDF world" in convert(minimal_pdf("Hello PDF world"), "application/pdf", "a.pdf")


def test_a_corrupt_pdf_is_refused_with_its_name() -> None:
    with pytest.raises(ConversionError, match=r"broken\.pdf: not a readable PDF"):
        convert(b"%PDF-1.4 garbage", "application/pdf", "broken.pdf")


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
