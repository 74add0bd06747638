"""Turn raw document content (plain text, Markdown, HTML, PDF, DOCX) into clean text Documents."""

from __future__ import annotations

import codecs
import io
import itertools
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import ByteStream

from ragpress.base.roles import Role

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SUPPORTED_TYPES = ("text/plain", "text/markdown", "text/html", "application/pdf", DOCX)
SUFFIX_TYPES = {
    ".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf", ".rst": "text/plain", ".docx": DOCX,
}
# A DOCX is a zip that python-docx unpacks whole into memory: an upload within the size limit must not unpack
# to gigabytes (a zip bomb). Real documents, images included, stay far below this.
MAX_DOCX_UNPACKED_BYTES = 256 * 2**20
_HEADING_STYLE = re.compile(r"Heading ([1-6])")


class ConversionError(ValueError):
    """A document could not be turned into text; the message says why and what to do."""


def content_type_for(path: Path) -> str:
    try:
        return SUFFIX_TYPES[path.suffix.lower()]
    except KeyError:
        raise ConversionError(
            f"{path.name}: unsupported file type '{path.suffix}'. Supported: "
            + ", ".join(sorted(SUFFIX_TYPES))
        ) from None


_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)


def decode_text(data: bytes, name: str, charset: str | None = None, content_type: str | None = None) -> str:
    """Strict UTF-8 (with or without BOM), or the charset the sender declared, or, for HTML that is not UTF-8, the
    charset its own ``<meta>`` declares: guessing an encoding silently corrupts text."""
    if charset is not None:
        return _decode_declared(data, name, charset)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        in_page = html_charset(data) if content_type == "text/html" else None
        if in_page is not None:
            return _decode_declared(data, name, in_page)
        raise ConversionError(
            f"{name}: not valid UTF-8 (byte {exc.start}). Re-encode it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {name}`, or declare its charset (Content-Type: text/plain; charset=latin1)."
        ) from None


def html_charset(data: bytes) -> str | None:
    """The charset an HTML page declares in a ``<meta>`` of its first 1,024 bytes, where browsers look for it."""
    found = _META_CHARSET.search(data[:1024])
    return found.group(1).decode("ascii") if found else None


def _decode_declared(data: bytes, name: str, charset: str) -> str:
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ConversionError(f"{name}: unknown charset '{charset}'. Declare a real one (utf-8, latin1, "
                              "windows-1252, ...) or send the file as UTF-8.") from None
    try:
        return data.decode(charset)
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{name}: not valid {charset} (byte {exc.start}), though declared so. Declare its "
                              "real charset or re-encode it as UTF-8.") from None


def html_to_text(html: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, nav, header, footer, template, svg"):
        node.decompose()
    body = tree.body or tree.root
    if body is None:
        return ""
    blocks = []
    for node in body.css("h1, h2, h3, h4, h5, h6, p, li, pre, blockquote, td, th, dt, dd"):
        text = node.text(separator=" ", strip=True)
        if text:
            heading = node.tag in {"h1", "h2", "h3", "h4", "h5", "h6"}
            blocks.append(("#" * int(node.tag[1]) + " " + text) if heading else text)
    if not blocks:  # markup without block elements
        return _normalise(body.text(separator=" ", strip=True))
    return _normalise("\n\n".join(blocks))


def markdown_to_text(markdown: str) -> str:
    """Keep headings (as '# ' lines, so the multi-scale splitter can find sections) and prose."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(markdown)
    blocks: list[str] = []
    heading_level = 0
    for token in tokens:
        if token.type == "heading_open":
            heading_level = int(token.tag[1])
        elif token.type == "inline":
            text = "".join(_inline_text(child) for child in token.children or []).strip()
            if text:
                blocks.append(("#" * heading_level + " " + text) if heading_level else text)
            heading_level = 0
        elif token.type in {"fence", "code_block"}:
            blocks.append(token.content.strip())
    return _normalise("\n\n".join(blocks))


def _inline_text(child: Any) -> str:
    if child.type in {"softbreak", "hardbreak"}:
        return "\n" if child.type == "hardbreak" else " "
    return child.content or ""


def pdf_to_text(data: bytes, name: str) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ConversionError(f"{name}: the PDF is password-protected. Send a copy without a password.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ConversionError:
        raise
    except Exception as exc:  # a parser of untrusted bytes fails in many ways; each is this file's, never the batch's
        raise ConversionError(f"{name}: not a readable PDF ({exc or exc.__class__.__name__}).") from None
    return _normalise("\n\n".join(pages))


def docx_to_text(data: bytes, name: str) -> str:
    """Paragraphs and tables in document order; heading styles become '# ' lines, as the multi-scale splitter
    expects of sections."""
    from docx import Document as WordDocument

    try:
        _check_unpacked_size(data, name)
        blocks = [_docx_block(item) for item in WordDocument(io.BytesIO(data)).iter_inner_content()]
    except ConversionError:
        raise
    except Exception as exc:  # as for PDFs: not a Word file, a broken zip, broken XML
        raise ConversionError(f"{name}: not a readable DOCX file ({exc or exc.__class__.__name__}).") from None
    return _normalise("\n\n".join(block for block in blocks if block))


def _check_unpacked_size(data: bytes, name: str) -> None:
    # zipfile never inflates a member past its declared size, so the declared sizes bound what is unpacked
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    if unpacked > MAX_DOCX_UNPACKED_BYTES:
        raise ConversionError(f"{name}: unpacks to {unpacked:,} bytes; the limit is {MAX_DOCX_UNPACKED_BYTES:,}. "
                              "Save it without embedded media or split it.")


def _docx_block(item: Any) -> str:
    from docx.table import Table

    if isinstance(item, Table):
        # python-docx yields a merged cell once per grid column it spans (the same object): keep it once
        rows = [" | ".join(cell.text.strip() for cell, _ in itertools.groupby(row.cells)) for row in item.rows]
        return "\n".join(row for row in rows if row.strip(" |"))
    text = item.text.strip()
    style = item.style.name if item.style is not None else ""
    heading = _HEADING_STYLE.fullmatch(style or "")
    level = 1 if style == "Title" else int(heading.group(1)) if heading else 0
    return f"{'#' * level} {text}" if level and text else text


def _normalise(text: str) -> str:
    # a text file with NUL bytes is refused before this; a PDF's or DOCX's text may still carry stray ones
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_BINARY_CONVERTERS = {"application/pdf": pdf_to_text, DOCX: docx_to_text}


def convert(content: str | bytes, content_type: str, name: str) -> str:
    """Text of one document; raises ConversionError with a user-facing reason."""
    if content_type not in SUPPORTED_TYPES:
        raise ConversionError(f"{name}: unsupported content type '{content_type}'. "
                              f"Supported: {', '.join(SUPPORTED_TYPES)}.")
    if content_type in _BINARY_CONVERTERS:
        if isinstance(content, str):
            raise ConversionError(f"{name}: {content_type} content must be bytes (upload the file), not text.")
        return _BINARY_CONVERTERS[content_type](content, name)
    text = decode_text(content, name, content_type=content_type) if isinstance(content, bytes) else content
    if "\x00" in text:
        raise ConversionError(f"{name}: contains NUL bytes, so it is binary, not text.")
    if content_type == "text/html":
        return html_to_text(text)
    if content_type == "text/markdown":
        return markdown_to_text(text)
    return _normalise(text)


def file_type(name: str, declared: str | None) -> str:
    """What an uploaded file is: its name's suffix says, else the content type its sender declared."""
    by_suffix = SUFFIX_TYPES.get(PurePosixPath(name).suffix.lower())
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if by_suffix is not None:
        return by_suffix
    if media_type in SUPPORTED_TYPES:
        return media_type
    sent = f", sent as '{media_type}'" if media_type else ""
    raise ConversionError(f"{name}: unsupported file type ('{PurePosixPath(name).suffix}'{sent}). Supported: "
                          f"{' '.join(sorted(SUFFIX_TYPES))}, or the content types {', '.join(SUPPORTED_TYPES)}.")


def file_to_text(data: bytes, name: str, declared: str | None = None) -> tuple[str, str]:
    """The text of an uploaded file and the content type it was read as; ConversionError says why it cannot be
    read. ``declared`` is the Content-Type its sender gave, whose charset (if any) decodes a text file."""
    content_type = file_type(name, declared)
    charset = _charset(declared)
    content = decode_text(data, name, charset, content_type) if content_type.startswith("text/") else data
    text = convert(content, content_type, name)
    if not text:
        hint = " (a scanned PDF has no text layer: run OCR on it first)" if content_type == "application/pdf" else ""
        raise ConversionError(f"{name}: no text after conversion{hint}.")
    return text, content_type


def _charset(content_type: str | None) -> str | None:
    for parameter in (content_type or "").split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


@component
class TextConverter:
    """Converts documents of any supported content type into clean text Documents.

    The content type comes from ``meta["content_type"]`` (default ``default_content_type``). A document
    that cannot be converted is reported in ``failed`` with its reason instead of failing the batch.

    Usage:
        >>> TextConverter().run(documents=[Document(content="<p>Hi</p>", meta={"content_type": "text/html"})])
        {'documents': [Document(content='Hi', ...)], 'failed': []}
    """

    role: ClassVar[Role] = Role.CONVERTER

    def __init__(self, default_content_type: str = "text/plain") -> None:
        if default_content_type not in SUPPORTED_TYPES:
            raise ValueError(f"default_content_type must be one of {SUPPORTED_TYPES}.")
        self.default_content_type = default_content_type

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, default_content_type=self.default_content_type)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextConverter:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], failed=list[dict[str, Any]])
    def run(self, *, documents: list[Document], sources: list[ByteStream] | None = None) -> dict[str, Any]:
        """
        :param documents: submitted documents; ``meta.content_type`` says how to read their text.
        :param sources: raw files (PDF, HTML, ...) with their meta, converted the same way.
        :returns: ``documents`` converted to clean text, and ``failed``: what could not be read, with why.
        """
        converted: list[Document] = []
        failed: list[dict[str, Any]] = []
        items: list[tuple[str | bytes, dict[str, Any]]] = [(d.content or "", dict(d.meta)) for d in documents]
        items += [(s.data, dict(s.meta)) for s in sources or []]
        for content, meta in items:
            name = str(meta.get("doc_id") or meta.get("file_path") or "document")
            content_type = meta.pop("content_type", None) or self.default_content_type
            try:
                text = convert(content, content_type, name)
            except ConversionError as exc:
                failed.append({"doc_id": meta.get("doc_id"), "error": str(exc)})
                continue
            if not text:
                failed.append({"doc_id": meta.get("doc_id"), "error": f"{name}: no text after conversion."})
                continue
            converted.append(Document(content=text, meta=meta))
        return {"documents": converted, "failed": failed}
