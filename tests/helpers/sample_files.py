"""Small PDF and DOCX files made from scratch, for tests; run as a script it writes the fixtures in
tests/fixtures/files (see the README there).

The PDF writer is hand-written (no PDF library here writes text): one page per call, Helvetica, one line of text per
entry, with a correct cross-reference table so pypdf reads it without repairs. The DOCX comes from python-docx.
"""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

PDF_LINES = (
    "Basalt columns of the Giant's Causeway",
    "The causeway on the coast of County Antrim holds about 40,000 interlocking basalt columns.",
    "They formed some 60 million years ago, when a lava flow cooled slowly and cracked into hexagons.",
)
DOCX_HEADING = "Keeping a sourdough starter"
DOCX_PARAGRAPHS = (
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria living in flour and water.",
    "Feed the starter twice a day with equal weights of flour and water to keep the yeast active.",
)
DOCX_TABLE = (("Ingredient", "Grams"), ("Rye flour", "50"), ("Water", "50"))


def text_pdf(lines: tuple[str, ...] | list[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica (ASCII text; parentheses and backslashes are escaped)."""
    escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
    stream = ("BT /F1 11 Tf 14 TL 56 760 Td " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET").encode()
    return _pdf(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream", pages=1)


def shared_stream_pdf(pages: int, stream_bytes: int) -> bytes:
    """A small file that is slow to read: one compressed content stream that every one of ``pages`` pages shows,
    so a parser decodes and interprets it once per page."""
    operator = b"BT /F1 1 Tf (a) Tj ET\n"
    packed = zlib.compress(operator * (stream_bytes // len(operator)), 9)
    return _pdf(b"<< /Length " + str(len(packed)).encode() + b" /Filter /FlateDecode >>\nstream\n" + packed
                + b"\nendstream", pages)


def _pdf(content: bytes, pages: int) -> bytes:
    """A PDF whose ``pages`` pages all show the content stream object ``content`` in Helvetica."""
    kids = " ".join(f"{5 + n} 0 R" for n in range(pages)).encode()
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [" + kids + b"] /Count "
               + str(pages).encode() + b" >>", content,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", *([page] * pages)]
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


def docx_file(heading: str = DOCX_HEADING, paragraphs: tuple[str, ...] | list[str] = DOCX_PARAGRAPHS,
              table: tuple[tuple[str, ...], ...] = DOCX_TABLE) -> bytes:
    """A DOCX with a level-1 heading, paragraphs and (if given) a table, in that order."""
    from docx import Document

    document = Document()
    document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def write_fixtures(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "giants-causeway.pdf").write_bytes(text_pdf(PDF_LINES))
    (folder / "sourdough.docx").write_bytes(docx_file())


if __name__ == "__main__":
    write_fixtures(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "fixtures" / "files")
