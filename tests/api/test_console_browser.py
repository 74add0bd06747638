"""The web console end to end: a real headless Chromium (Debian's package) against a real `ragpress serve`.

One user's session, in order: edit the query pipeline in the editor, see a bad edit refused inline with its line,
fix it, save, ask a question in the playground and watch the answer arrive with pruned sentences struck through,
then look at the jobs page. Screenshots of each step go to test-artifacts/console/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerProcess, serving, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from chromium import MISSING, browsing, fresh_folder, installed, wait_for  # noqa: E402

if not installed():
    pytest.skip(MISSING, allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# Several sentences per document, most of them off the question, so the pruner has something to strike out.
DOCUMENTS = [
    {"id": "millau", "text": (
        "The Millau Viaduct is a cable-stayed bridge in southern France. It spans the valley of the river Tarn. "
        "The viaduct was opened to traffic in December 2004. Its tallest mast rises 343 metres above the base. "
        "The bridge was designed by the engineer Michel Virlogeux with the architect Norman Foster. "
        "Local cheese makers in Roquefort sell their produce to visitors who come to see it.")},
    {"id": "saturn", "text": (
        "Saturn is the sixth planet from the Sun. It is a gas giant with an average radius about nine times that of "
        "Earth. Saturn has a prominent ring system made mostly of ice particles. The planet has 146 known moons. "
        "Titan, its largest moon, is bigger than the planet Mercury.")},
    {"id": "bread", "text": (
        "Sourdough bread is leavened by wild yeast and lactic acid bacteria. The starter is fed with flour and water. "
        "A long fermentation gives the bread its sour taste. Bakers often score the loaf before baking it.")},
]

# The query pipeline the user writes in the editor: the shipped Provence pruner between retrieval and generation.
PRUNED_PIPELINE = """\
# Query with pruning: retrieve, keep only the sentences the question needs, answer from them.
components:
  embedder:
    type: ragpress.indexers.embedders.QueryEmbedder
    init_parameters:
      model: all-MiniLM-L6-v2
      batch_size: 32
      normalize: true
  retriever:
    type: ragpress.indexers.retrievers.ScopedEmbeddingRetriever
    init_parameters:
      top_k: 6
      level: chunk
  pruner:
    type: ragpress.pruners.component.ProvencePruner
    init_parameters:
      model: ragpress-provence-minilm
      top_k: 3
  generator:
    type: ragpress.generators.local_generator.LocalGenerator
    init_parameters:
      model: SmolLM2-135M-Instruct
      max_new_tokens: 48
      max_context_tokens: 1024
connections:
  - sender: embedder.embedding
    receiver: retriever.query_embedding
  - sender: retriever.documents
    receiver: pruner.documents
  - sender: pruner.documents
    receiver: generator.documents
metadata: {}
"""
PRUNER_TYPE = "ragpress.pruners.component.ProvencePruner"
PRUNER_TYPE_LINE = PRUNED_PIPELINE.splitlines().index(f"    type: {PRUNER_TYPE}") + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("console-home"))


@pytest.fixture(scope="module")
def ingested(server: ServerProcess) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        response = client.post("/v1/collections/demo/documents", json={"documents": DOCUMENTS})
        assert response.status_code == 202
        return wait_for_job(client, response.json()["job_id"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from browsing(tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module", autouse=True)
def artifacts() -> Path:
    return fresh_folder(ARTIFACTS)


def replace_in_editor(driver: WebDriver, old: str, new: str) -> None:
    """Select ``old`` in the YAML textarea, as a user would with the mouse, and type ``new`` over it."""
    editor = driver.find_element(By.ID, "yaml-editor")
    driver.execute_script("""
        const [area, old] = arguments; const start = area.value.indexOf(old);
        area.focus(); area.setSelectionRange(start, start + old.length);""", editor, old)
    editor.send_keys(new)


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_user_edits_a_pipeline_queries_it_and_checks_jobs(server: ServerProcess, ingested: dict[str, Any],
                                                            browser: WebDriver) -> None:
    assert ingested["status"] == "succeeded"

    # The root redirects to the console, which opens on the pipeline editor with the built-in pipelines listed.
    browser.get(server.url + "/")
    assert browser.current_url.split("#")[0].endswith("/console/")
    wait_for(browser, "#pipeline-list .item", text="query").click()
    wait_for(browser, "#validity", text="valid")
    wait_for(browser, "#graph .node[data-name='retriever']")
    shot(browser, "01-editor-builtin")

    # The user pastes in a pipeline with a pruner; it validates and the graph shows the new component.
    editor = browser.find_element(By.ID, "yaml-editor")
    browser.execute_script("arguments[0].value = arguments[1];"
                           "arguments[0].dispatchEvent(new Event('input'));", editor, PRUNED_PIPELINE)
    wait_for(browser, "#graph .node[data-name='pruner']")

    # A bad edit: a module outside the allowlist. The error appears inline, on that line, before any save.
    replace_in_editor(browser, PRUNER_TYPE, "os.system")
    problem = wait_for(browser, "#problems .problem", text=f"line {PRUNER_TYPE_LINE}")
    assert "os.system" in problem.text or "allow" in problem.text.lower()
    gutter_line = browser.find_elements(By.CSS_SELECTOR, "#gutter span")[PRUNER_TYPE_LINE - 1]
    assert "bad" in gutter_line.get_attribute("class")
    assert not browser.find_element(By.ID, "save-pipeline").is_enabled()
    shot(browser, "02-editor-validation-error")

    # Fixed: the problems clear, and Save stores a new version that shows up in the history.
    replace_in_editor(browser, "os.system", PRUNER_TYPE)
    wait_for(browser, "#validity", text="valid")
    assert browser.find_elements(By.CSS_SELECTOR, "#problems .problem") == []
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "save-pipeline").is_enabled())
    browser.find_element(By.ID, "save-pipeline").click()
    wait_for(browser, "#toast", text="Saved query as version")
    wait_for(browser, "#version-list .item", text="(current)")
    with httpx.Client(base_url=server.url) as client:
        assert PRUNER_TYPE in client.get("/v1/pipelines/query").json()["yaml"]
    shot(browser, "03-editor-saved")

    # The playground: the answer streams in, then the sources with the pruned sentences struck through.
    browser.find_element(By.ID, "tab-playground").click()
    wait_for(browser, "#collection option", text="demo")
    Select(browser.find_element(By.ID, "collection")).select_by_value("demo")
    Select(browser.find_element(By.ID, "query-pipeline")).select_by_value("query")
    browser.find_element(By.ID, "question").send_keys("When was the Millau Viaduct opened?")
    browser.find_element(By.ID, "ask").click()
    status = wait_for(browser, "#answer-status", text="", timeout_s=240)
    WebDriverWait(browser, 240).until(lambda d: status.text.split(":")[0] in {"done", "abstained", "error"})
    shot(browser, "04-playground-answer")
    assert status.text != "error", browser.find_element(By.ID, "answer").text
    answer = browser.find_element(By.ID, "answer")
    assert answer.text.strip()
    assert int(answer.get_attribute("data-tokens")) > 1, "the answer did not arrive as streamed token events"
    sources = browser.find_elements(By.CSS_SELECTOR, "#sources .source")
    assert sources and "millau" in sources[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "#sources del.pruned"), "no sentence was struck through"
    assert browser.find_elements(By.CSS_SELECTOR, "#sources .kept")
    assert "context tokens" in browser.find_element(By.ID, "tokens").text
    assert "total" in browser.find_element(By.ID, "timings").text

    # The jobs page lists the ingestion job, finished, with its progress.
    browser.find_element(By.ID, "tab-jobs").click()
    row = wait_for(browser, f"#jobs-body tr[data-job='{ingested['job_id']}']")
    assert "succeeded" in row.text and f"{len(DOCUMENTS)}/{len(DOCUMENTS)}" in row.text
    shot(browser, "05-jobs")

    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) == [
        "01-editor-builtin.png", "02-editor-validation-error.png", "03-editor-saved.png",
        "04-playground-answer.png", "05-jobs.png"]
