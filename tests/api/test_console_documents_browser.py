"""The console's document management end to end: a real headless Chromium against a real `ragpress serve`.

One user's session, in order: create a collection, upload a text file, a DOCX and a broken PDF through the file
input, watch the upload's job finish (its short id is one the server accepts), browse the documents with the
failed one's reason, open the DOCX to see its chunks and their levels, delete one document (cancelling first),
then delete the whole collection after typing its name. A second session pages through a long collection whose
ids are paths. Screenshots of each step go to test-artifacts/console-documents/.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServerProcess, serving, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
docx = pytest.importorskip("docx", reason="python-docx is not installed (pip install -e .)")
from chromium import MISSING, browsing, fresh_folder, installed, wait_for, wait_gone  # noqa: E402

if not installed():
    pytest.skip(MISSING, allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console-documents"
JOB_TIMEOUT_S = 300

GLACIERS = (
    "Glaciers form where snow accumulates faster than it melts over many years.\n\n"
    "The weight of the snow compresses the lower layers into dense glacial ice. Under its own weight the ice "
    "begins to flow downhill like a very slow river. Valley glaciers carve U-shaped valleys as they move.\n\n"
    "When a glacier retreats it leaves behind moraines of rock and gravel. Meltwater from glaciers feeds many "
    "rivers in summer.")
TIDES_HEADING = "How tides work"
TIDES_PARAGRAPHS = [
    "Tides are the regular rise and fall of the sea surface. They are caused mainly by the gravity of the Moon "
    "pulling on the oceans.",
    "Most coasts see two high tides and two low tides every lunar day. Spring tides, with the largest range, "
    "happen when the Sun and the Moon line up.",
]
COLLECTION = "manuals"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("console-documents-home"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from browsing(tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module", autouse=True)
def artifacts() -> Path:
    return fresh_folder(ARTIFACTS)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A text file, a DOCX written here with python-docx, and a 'PDF' that is not one."""
    text = tmp_path / "glaciers.txt"
    text.write_text(GLACIERS)
    document = docx.Document()
    document.add_heading(TIDES_HEADING, level=1)
    for paragraph in TIDES_PARAGRAPHS:
        document.add_paragraph(paragraph)
    word = tmp_path / "tides.docx"
    document.save(str(word))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"this is not a PDF at all")
    return {"text": text, "docx": word, "broken": broken}


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def row_css(doc_id: str) -> str:
    return f"#documents-body tr.document[data-doc='{doc_id}']"


def confirm_dialog(driver: WebDriver) -> None:
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None,
                                    "the confirmation dialog did not open")


def test_a_user_uploads_browses_and_deletes_documents(server: ServerProcess, browser: WebDriver,
                                                      files: dict[str, Path]) -> None:
    # A fresh server has no collections: the user creates one from the documents page.
    browser.get(server.url + "/console/#documents")
    wait_for(browser, "#collection-list li", text="No collections yet")
    browser.find_element(By.ID, "new-collection-name").send_keys(COLLECTION)
    browser.find_element(By.ID, "new-collection").click()
    wait_for(browser, f"#collection-list .item.selected[data-name='{COLLECTION}']")
    wait_for(browser, "#documents-body td", text="No documents yet")
    shot(browser, "01-collection-created")

    # Three files in one upload through the file input; the job is followed until it ends.
    browser.find_element(By.ID, "upload-files").send_keys("\n".join(str(f) for f in files.values()))
    browser.find_element(By.ID, "upload").click()
    box = wait_for(browser, "#upload-job[data-status]")
    WebDriverWait(browser, JOB_TIMEOUT_S).until(
        lambda d: box.get_attribute("data-status") not in ("queued", "running"), "the upload's job never finished")
    assert box.get_attribute("data-status") == "partial", box.text  # the broken PDF fails, the others index
    assert "broken.pdf" in box.find_element(By.CSS_SELECTOR, ".errors").text
    job_id = box.get_attribute("data-job")
    short = box.find_element(By.CSS_SELECTOR, "code.job-id").text
    assert len(short) == 8 and job_id.startswith(short)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get(f"/v1/jobs/{short}").json()["job_id"] == job_id, "the short id shown is not accepted"
    shot(browser, "02-upload-finished")

    # The list shows each file as a document: the indexed ones with their units, the failed one with its reason.
    for path in (files["text"], files["docx"]):
        row = wait_for(browser, row_css(path.name), text="indexed")
        units = row.find_element(By.CSS_SELECTOR, "td.num").text
        assert units.isdigit() and int(units) > 0, row.text
    wait_for(browser, row_css("broken.pdf"), text="failed")
    assert wait_for(browser, "#documents-body tr.doc-error[data-doc='broken.pdf']").text.strip()
    wait_for(browser, "#collection-stats", text="2 indexed documents")
    shot(browser, "03-documents-listed")

    # Opening the DOCX shows its converted text as chunks, each with its level, and what the file was.
    wait_for(browser, f"{row_css('tides.docx')} .doc-link").click()
    wait_for(browser, "#document-title", text="tides.docx")
    wait_for(browser, "#chunks .chunk")
    chunks = browser.find_elements(By.CSS_SELECTOR, "#chunks .chunk")
    levels = {c.get_attribute("data-level") for c in chunks}
    assert {"document", "chunk"} <= levels <= {"document", "section", "chunk", "slice"}, levels
    assert all(c.find_element(By.CSS_SELECTOR, ".level").text.lower() == c.get_attribute("data-level")
               for c in chunks)
    assert any("Spring tides" in c.text for c in chunks), "the DOCX text is not in its chunks"
    sha256 = browser.find_element(By.CSS_SELECTOR, "#document-meta code").get_attribute("title")
    assert sha256 == hashlib.sha256(files["docx"].read_bytes()).hexdigest()
    wait_for(browser, "#level-filter .chip[data-level='chunk']").click()
    WebDriverWait(browser, 30).until(lambda d: {c.get_attribute("data-level") for c in
                                                d.find_elements(By.CSS_SELECTOR, "#chunks .chunk")} == {"chunk"})
    shot(browser, "04-document-chunks")

    # Deleting asks first; cancelling keeps the document, confirming removes it from the list and the server.
    wait_for(browser, f"{row_css('glaciers.txt')} .delete-doc").click()
    confirm_dialog(browser)
    browser.find_element(By.ID, "confirm-cancel").click()
    wait_for(browser, row_css("glaciers.txt"))
    wait_for(browser, f"{row_css('glaciers.txt')} .delete-doc").click()
    confirm_dialog(browser)
    shot(browser, "05-confirm-delete-document")
    browser.find_element(By.ID, "confirm-ok").click()
    wait_for(browser, "#toast", text="Deleted glaciers.txt")
    wait_gone(browser, row_css("glaciers.txt"))
    wait_for(browser, "#collection-stats", text="1 indexed document ·")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        listed = client.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    assert sorted(d["id"] for d in listed) == ["broken.pdf", "tides.docx"]
    shot(browser, "06-document-deleted")

    # The collection goes only once its name is typed in the confirmation.
    browser.find_element(By.ID, "delete-collection").click()
    confirm_dialog(browser)
    assert not browser.find_element(By.ID, "confirm-ok").is_enabled()
    browser.find_element(By.ID, "confirm-input").send_keys(COLLECTION)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "confirm-ok").is_enabled())
    shot(browser, "07-confirm-delete-collection")
    browser.find_element(By.ID, "confirm-ok").click()
    wait_for(browser, "#toast", text=f"Deleted collection {COLLECTION}")
    wait_gone(browser, f"#collection-list .item[data-name='{COLLECTION}']")
    wait_for(browser, "#collection-list li", text="No collections yet")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert COLLECTION not in [c["name"] for c in client.get("/v1/collections").json()["collections"]]
        assert client.get(f"/v1/collections/{COLLECTION}/documents").status_code == 404
    shot(browser, "08-collection-deleted")


def test_a_long_collection_is_browsed_page_by_page(server: ServerProcess, browser: WebDriver) -> None:
    # 55 documents whose ids are paths: more than the console's page of 50.
    documents = [{"id": f"notes/day-{i:02d}.txt", "text": f"Field note {i}. The river was {i} centimetres high."}
                 for i in range(1, 56)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v1/collections/journal/documents", json={"documents": documents})
        assert response.status_code == 202, response.text
        assert wait_for_job(client, response.json()["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "succeeded"

    browser.get(server.url + "/console/")
    wait_for(browser, "#tab-documents").click()
    wait_for(browser, "#collection-list .item[data-name='journal']").click()
    wait_for(browser, "#documents-page", text="1–50")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#documents-body tr.document")) == 50
    assert not browser.find_element(By.ID, "documents-prev").is_enabled()

    browser.find_element(By.ID, "documents-next").click()
    wait_for(browser, "#documents-page", text="51–55")
    ids = [r.get_attribute("data-doc") for r in browser.find_elements(By.CSS_SELECTOR, "#documents-body tr.document")]
    assert ids == [f"notes/day-{i}.txt" for i in range(51, 56)]
    assert not browser.find_element(By.ID, "documents-next").is_enabled()

    # An id with a '/' opens like any other: the path is sent segment by segment.
    wait_for(browser, f"{row_css('notes/day-53.txt')} .doc-link").click()
    wait_for(browser, "#chunks .chunk", text="53 centimetres")
    shot(browser, "09-second-page-document")

    browser.find_element(By.ID, "documents-prev").click()
    wait_for(browser, "#documents-page", text="1–50")
    wait_for(browser, row_css("notes/day-01.txt"))
