"""Uploaded files converted in a child process, each within a time and memory budget.

PDF and DOCX parsers are pure Python: a small crafted file (one compressed content stream shared by thousands of
pages, a DOCX of millions of empty runs) keeps one busy for minutes, and inside the server it would also hold the
interpreter lock, so every request, health checks included, would wait. A child process holds no lock of the
server's, is killed when a file overruns, and cannot take more memory than its limit.
"""

from __future__ import annotations

import multiprocessing
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection

from ragpress.indexers.converters import ConversionError, file_to_text

MEMORY_LIMIT_BYTES = 2 * 2**30
# Forked from a clean server process that has already imported the converters: a child starts in milliseconds.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["ragpress.indexers.converters"])


@dataclass(frozen=True)
class Upload:
    """An uploaded file: its name (the document id), its bytes, and the Content-Type its sender declared."""

    name: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class Converted:
    text: str
    content_type: str


def convert_isolated(uploads: list[Upload], seconds_per_file: float) -> list[Converted | ConversionError]:
    """Each upload's text and the type it was read as, or the ConversionError saying why not; a file that takes
    longer than ``seconds_per_file`` or more memory than the limit fails alone, and the rest go on."""
    results: list[Converted | ConversionError] = []
    while len(results) < len(uploads):
        results.extend(_run_child(uploads[len(results):], seconds_per_file))
    return results


def _run_child(uploads: list[Upload], seconds_per_file: float) -> list[Converted | ConversionError]:
    """Results in order until the child finishes them all or one overruns (then that one is its failure)."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_convert_all, args=(uploads, sender), daemon=True)
    child.start()
    sender.close()
    results: list[Converted | ConversionError] = []
    try:
        while len(results) < len(uploads):
            name = uploads[len(results)].name
            if not receiver.poll(seconds_per_file):
                results.append(ConversionError(f"{name}: reading it took longer than {seconds_per_file:g} s, so it "
                                               "was stopped. Split it, or convert it to text and send that."))
                break
            try:
                results.append(receiver.recv())
            except EOFError:  # the child died: out of memory, most likely
                results.append(ConversionError(f"{name}: reading it needed more than "
                                               f"{MEMORY_LIMIT_BYTES // 2**30} GiB of memory, so it was stopped. "
                                               "Split it, or convert it to text and send that."))
                break
    finally:
        child.kill()
        child.join()
        receiver.close()
    return results


def _convert_all(uploads: list[Upload], sender: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    for upload in uploads:
        try:
            text, content_type = file_to_text(upload.data, upload.name, upload.content_type)
            sender.send(Converted(text, content_type))
        except ConversionError as exc:
            sender.send(exc)
        except MemoryError:
            sender.send(ConversionError(f"{upload.name}: reading it needed more memory than allowed; split it."))
    sender.close()
