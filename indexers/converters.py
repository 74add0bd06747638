"""Turn raw document content (plain text, Markdown, HTML, PDF) into clean text Documents."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import ByteStream

from ragpress.base.roles import Role

SUPPORTED_TYPES = ("text/plain", "text/markdown", "text/html", "application/pdf")
_SUFFIX_TYPES = {
    ".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf", ".rst": "text/plain",
}


class ConversionError(ValueError):
    """A document could not be turned into text; the message says why and what to do."""


def content_type_for(path: Path) -> str:
    try:
        return _SUFFIX_TYPES[path.suffix.lower()]
    except KeyError:
        raise ConversionError(
            f"{path.name}: unsupported file type '{path.suffix}'. Supported: "
            + ", ".join(sorted(_SUFFIX_TYPES))
        ) from None


def decode_text(data: bytes, name: str) -> str:
    """Strict UTF-8 (with or without BOM): guessing an encoding silently corrupts text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(
            f"{name}: not valid UTF-8 (byte {exc.start}). Re-encode it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {name}`."
        ) from None


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
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise ConversionError(f"{name}: not a readable PDF ({exc}).") from None
    return _normalise("\n\n".join(pages))


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def convert(content: str | bytes, content_type: str, name: str) -> str:
    """Text of one document; raises ConversionError with a user-facing reason."""
    if content_type not in SUPPORTED_TYPES:
        raise ConversionError(f"{name}: unsupported content type '{content_type}'. "
                              f"Supported: {', '.join(SUPPORTED_TYPES)}.")
    if content_type == "application/pdf":
        if isinstance(content, str):
            raise ConversionError(f"{name}: PDF content must be bytes, not text.")
        return pdf_to_text(content, name)
    text = decode_text(content, name) if isinstance(content, bytes) else content
    if "\x00" in text:
        raise ConversionError(f"{name}: contains NUL bytes, so it is binary, not text.")
    if content_type == "text/html":
        return html_to_text(text)
    if content_type == "text/markdown":
        return markdown_to_text(text)
    return _normalise(text)


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
