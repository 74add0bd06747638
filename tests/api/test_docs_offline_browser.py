"""The API reference at /docs works with no network: a real headless Chromium, allowed to reach only localhost,
renders it from the assets ragpress serves itself, against a real `ragpress serve`.

Screenshots go to test-artifacts/docs/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServerProcess, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from chromium import MISSING, browsing, fresh_folder, installed, wait_for  # noqa: E402

if not installed():
    pytest.skip(MISSING, allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "docs"
# Every host name resolves to nothing and anything not on loopback goes to a proxy that is not there (port 9,
# discard): a page that needs a CDN cannot get it, even on a machine that is online.
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9")
QUERY_PATH = "/v1/collections/{collection}/query"
CDN_SCRIPT = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"  # what FastAPI's page loads


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("docs-home"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from browsing(tmp_path_factory.mktemp("chromium-profile"), OFFLINE)


@pytest.fixture(scope="module", autouse=True)
def artifacts() -> Path:
    return fresh_folder(ARTIFACTS)


def test_the_docs_page_renders_every_operation_with_no_network(server: ServerProcess, browser: WebDriver) -> None:
    browser.get(server.url + "/docs")
    wait_for(browser, ".info .title", text="ragpress")
    query = wait_for(browser, f".opblock-post .opblock-summary-path[data-path='{QUERY_PATH}']")
    paths = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/collections/{collection}/documents", "/v1/pipelines/{name}", "/healthz", "/metrics"} <= paths
    browser.save_screenshot(str(ARTIFACTS / "01-operations.png"))

    # The query operation opens on its request schema and every answer it can give, errors included.
    query.click()
    body = wait_for(browser, ".opblock-post.is-open .opblock-section-request-body")
    assert "application/json" in body.text
    codes = {row.get_attribute("data-code")
             for row in browser.find_elements(By.CSS_SELECTOR, ".opblock-post.is-open tr.response")}
    assert {"200", "401", "404", "413", "422", "429", "503"} <= codes
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, ".opblock.is-open"))
    browser.save_screenshot(str(ARTIFACTS / "02-query-operation.png"))

    # The API-key schemes are offered for "Authorize".
    browser.find_element(By.CSS_SELECTOR, ".btn.authorize").click()
    dialog = wait_for(browser, ".modal-ux-content")
    assert "bearer" in dialog.text and "X-API-Key" in dialog.text
    browser.save_screenshot(str(ARTIFACTS / "03-authorize.png"))

    # Everything the page loaded came from the server itself, and the outside world was out of reach.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server.url) for url in loaded), loaded
    reached = browser.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0], {mode: 'no-cors'})"
        ".then(() => done('reached'), () => done('blocked'))", CDN_SCRIPT)
    assert reached == "blocked"


def test_only_the_page_and_its_own_assets_are_served(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    bundle = httpx.get(server.url + "/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    # the bundle's demo page (which fetches a spec from the internet) and FastAPI's CDN-loaded ReDoc are not served
    assert httpx.get(server.url + "/docs/assets/index.html").status_code == 404
    assert httpx.get(server.url + "/redoc").status_code == 404
