"""Which files of the paths given to ``ragpress ingest`` become which documents.

A file inside a folder argument is identified by ``<folder name>/<path relative to it>`` (``numpy/reference/
index.html``), a file given directly by its name, so two files can only share an id when two arguments map to
the same one: that is refused before anything is read or sent. Files are read one at a time, when their batch
is filled; what cannot be sent (an unsupported type, too large, unreadable, or refused by the server's own
rules) is skipped with its reason, and summed up by type.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNSUPPORTED, TOO_LARGE, UNREADABLE = "not supported", "too large", "unreadable"
_BOM_BYTES = 3  # a UTF-8 byte order mark is read, never sent


class NotIngestible(ValueError):
    """The paths cannot be ingested as given (missing, or two files would share an id); nothing was sent."""


@dataclass(frozen=True)
class Source:
    path: Path
    doc_id: str


@dataclass(frozen=True)
class Skip:
    path: Path
    kind: str  # UNSUPPORTED, TOO_LARGE or UNREADABLE
    reason: str

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower() or "(no extension)"


@dataclass(frozen=True)
class Document:
    """A file read for sending: the body the server takes, and its size in the request's compact JSON."""

    body: dict[str, Any]
    size: int

    @property
    def doc_id(self) -> str:
        return str(self.body["id"])

    @classmethod
    def of(cls, body: dict[str, Any]) -> Document:
        return cls(body, len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()))


@dataclass
class Plan:
    """What the paths hold: the files to send, those skipped already, and for each folder its id prefix and the
    ids of every file still in it (what ``--delete-missing`` keeps)."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)


def supported_suffixes() -> list[str]:
    from ragpress.indexers.converters import SUFFIX_TYPES  # the server's own table of what it reads

    return sorted(SUFFIX_TYPES)


def plan(paths: list[Path]) -> Plan:
    """The documents the paths hold; NotIngestible when a path is missing or two files would share an id."""
    found = Plan()
    supported = set(supported_suffixes())
    seen: set[tuple[Path, str]] = set()  # a file named twice (a folder given twice) counts once
    for path in paths:
        if path.is_dir():
            prefix = _folder_name(path) + "/"
            found.prefixes.append(prefix)
            files = [(file, prefix + file.relative_to(path).as_posix()) for file in _walk(path)]
            found.present.update(doc_id for _file, doc_id in files)
        elif path.is_file():
            files = [(path, path.name)]
        else:
            raise NotIngestible(f"{path}: no such file or directory.")
        for file, doc_id in files:
            if (key := (file.resolve(), doc_id)) in seen:
                continue
            seen.add(key)
            if file.suffix.lower() in supported:
                found.sources.append(Source(file, doc_id))
            else:
                found.skipped.append(Skip(file, UNSUPPORTED, f"type '{file.suffix}' is not supported"))
    _refuse_collisions(found.sources)
    return found


def _folder_name(folder: Path) -> str:
    name = Path(os.path.abspath(folder)).name  # as typed: '.' is the current folder's name, a link keeps its own
    if not name:
        raise NotIngestible(f"{folder}: documents are named after their folder; give a folder below '{folder}'.")
    return name


def _walk(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` in a stable order, leaving out hidden files and folders (``.git``)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                yield path


def _refuse_collisions(sources: list[Source]) -> None:
    """NotIngestible naming both files when two files would share an id."""
    first: dict[str, Source] = {}
    clashes = [(first[s.doc_id], s) for s in sources if first.setdefault(s.doc_id, s) is not s]
    if clashes:
        lines = [f"'{a.doc_id}': {a.path} and {b.path}" for a, b in clashes[:5]]
        more = f"\n  ... and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise NotIngestible(
            f"{len(clashes)} document id(s) would be shared by two files; nothing was sent:\n  " + "\n  ".join(lines)
            + more + "\nA folder's files are named '<folder name>/<path in it>' and a file given directly by its "
            "name: give the folders' parents instead, or ingest them into different collections.")


def read(sources: Iterable[Source], max_document_bytes: int, max_request_bytes: int) -> Iterator[Document | Skip]:
    """Each source read as the document to send, or the reason it is skipped; one file in memory at a time."""
    from ragpress.indexers.converters import ConversionError

    for source in sources:
        try:
            yield _read_one(source, max_document_bytes, max_request_bytes)
        except ConversionError as exc:
            yield Skip(source.path, UNREADABLE, str(exc))
        except OSError as exc:
            yield Skip(source.path, UNREADABLE, f"cannot be read ({exc.strerror or exc.__class__.__name__})")


def _read_one(source: Source, max_document_bytes: int, max_request_bytes: int) -> Document | Skip:
    from ragpress.indexers.converters import content_type_for, decode_text

    if not _utf8(str(source.path)):
        return Skip(source.path, UNREADABLE, "its name is not valid UTF-8: rename it")
    content_type = content_type_for(source.path)
    as_text = content_type.startswith("text/")  # sent as it is stored; the server converts it
    too_large = Skip(source.path, TOO_LARGE, f"more than the {max_document_bytes:,}-byte document limit")
    if as_text and source.path.stat().st_size > max_document_bytes + _BOM_BYTES:
        return too_large  # no need to read it to know
    data = source.path.read_bytes()
    if as_text:
        text = decode_text(data, source.path.name, content_type=content_type)
    else:  # JSON carries text, so PDF and DOCX files become text here
        text, content_type = _binary_to_text(data, content_type, source.path.name), "text/plain"
    if len(text.encode("utf-8", "surrogatepass")) > max_document_bytes:
        return too_large
    body = {"id": source.doc_id, "text": text, "meta": {"content_type": content_type, "source": str(source.path)}}
    refused = _refusal(body)
    if refused:
        return Skip(source.path, UNREADABLE, refused)
    document = Document.of(body)
    if document.size + len(_ENVELOPE) > max_request_bytes:
        return Skip(source.path, TOO_LARGE, f"more than the {max_request_bytes:,}-byte request limit as JSON")
    return document


def _utf8(name: str) -> bool:
    """False for a file name with bytes the system could not decode (kept as surrogates), which no JSON carries."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _binary_to_text(data: bytes, content_type: str, name: str) -> str:
    from ragpress.indexers.converters import ConversionError, convert

    try:
        return convert(data, content_type, name)
    except ConversionError:
        raise
    except Exception as exc:  # a parser failing on a damaged file is that file's problem, never the whole run's
        raise ConversionError(f"{name}: could not be converted ({exc.__class__.__name__}).") from None


def _refusal(body: dict[str, Any]) -> str | None:
    """Why the server would refuse this document (empty, binary, a name that is not UTF-8, ...), checked by the
    server's own rules here, so that one file never fails a whole batch."""
    from pydantic import ValidationError

    from ragpress.api.schemas import DocumentIn

    try:
        DocumentIn.model_validate(body)
    except ValidationError as exc:
        return "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
    return None


# What a request adds around its documents: {"documents":[...]} and one comma between two documents.
_ENVELOPE = b'{"documents":[]}'


def batches(documents: Iterable[Document], max_documents: int, max_bytes: int) -> Iterator[list[Document]]:
    """``documents`` in consecutive batches of at most ``max_documents`` whose request body stays within
    ``max_bytes``; a document is never split, and each one must fit a request alone."""
    batch: list[Document] = []
    size = len(_ENVELOPE)
    for document in documents:
        if batch and size + 1 + document.size > max_bytes:
            yield batch
            batch, size = [], len(_ENVELOPE)
        size += document.size + (1 if batch else 0)
        batch.append(document)
        if len(batch) == max_documents:
            yield batch
            batch, size = [], len(_ENVELOPE)
    if batch:
        yield batch


def skipped_summary(skipped: list[Skip], verbose: bool = False) -> list[str]:
    """One line per kind of skip with its counts by type; with ``verbose`` every file and why."""
    if not skipped:
        return []
    lines = [f"skipped {len(skipped):,} file{'s' if len(skipped) != 1 else ''}"
             + ("" if verbose else " (--verbose lists them)") + ":"]
    for kind in (UNSUPPORTED, TOO_LARGE, UNREADABLE):
        of_kind = [s for s in skipped if s.kind == kind]
        if not of_kind:
            continue
        by_type = ", ".join(f"{n:,} {suffix}" for suffix, n in Counter(s.suffix for s in of_kind).most_common())
        note = f" (supported are {' '.join(supported_suffixes())})" if kind == UNSUPPORTED else ""
        lines.append(f"  {len(of_kind):,} {kind}: {by_type}{note}")
    if verbose:
        lines += [f"  {s.path}: {s.reason}" for s in skipped]
    return lines
