"""Uploaded files are read in a child process: in order, each failure its own, and a file that overruns its time
is stopped without holding up the others or the server."""

from __future__ import annotations

import time

import pytest
from sample_files import docx_file, shared_stream_pdf, text_pdf

from ragpress.indexers.converters import ConversionError
from ragpress.indexers.isolated_conversion import Converted, Upload, convert_isolated

pytestmark = pytest.mark.unit


def test_each_file_comes_back_in_order_as_text_or_its_reason() -> None:
    uploads = [Upload("notes.txt", b"Plain words."), Upload("broken.pdf", b"%PDF-1.4 torn"),
               Upload("report.pdf", text_pdf(["Quarterly figures rose."])),
               Upload("recipe.docx", docx_file("Bread", ["Knead the dough."], ()))]
    results = convert_isolated(uploads, seconds_per_file=60)
    assert results[0] == Converted("Plain words.", "text/plain")
    assert isinstance(results[1], ConversionError) and "broken.pdf: not a readable PDF" in str(results[1])
    assert isinstance(results[2], Converted) and "Quarterly figures rose." in results[2].text
    assert isinstance(results[3], Converted) and "Knead the dough." in results[3].text


def test_a_file_that_takes_too_long_is_stopped_and_the_next_ones_are_still_read() -> None:
    slow = shared_stream_pdf(pages=400, stream_bytes=500_000)  # 64 KB; minutes of parsing
    assert len(slow) < 100_000
    started = time.monotonic()
    results = convert_isolated([Upload("slow.pdf", slow), Upload("after.txt", b"Still read.")], seconds_per_file=2)
    assert time.monotonic() - started < 30
    assert isinstance(results[0], ConversionError) and "slow.pdf: reading it took longer than 2 s" in str(results[0])
    assert results[1] == Converted("Still read.", "text/plain")
