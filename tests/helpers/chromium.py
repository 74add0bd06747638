"""Headless Chromium (Debian's package) for browser tests: start one, wait for what a user would see."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = ("Debian's chromium and chromium-driver are not installed (/usr/bin/chromium, /usr/bin/chromedriver);"
           " `make test` installs them when run as root with apt")


def installed() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def start_chromium(profile_dir: Path, extra_flags: tuple[str, ...] = ()) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Headless, sandbox-free (containers), and nothing that phones home or updates itself during the test.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1000", f"--user-data-dir={profile_dir}",
                 *extra_flags):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))


def browsing(profile_dir: Path, extra_flags: tuple[str, ...] = ()) -> Iterator[WebDriver]:
    """A browser for a module's tests (``yield from`` in a fixture), quit when they end."""
    driver = start_chromium(profile_dir, extra_flags)
    yield driver
    driver.quit()


def fresh_folder(path: Path) -> Path:
    """The screenshots folder of one test module, emptied of an earlier run's."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def wait_for(driver: WebDriver, css: str, *, text: str | None = None, timeout_s: float = 60) -> WebElement:
    """The first element matching ``css`` (that is visible and, when given, contains ``text``). A list the page
    re-renders between finding an element and reading it leaves a stale reference: look again."""
    def found(d: WebDriver) -> WebElement | bool:
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and (text is None or text in element.text):
                return element
        return False
    wait = WebDriverWait(driver, timeout_s, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(found, f"no visible {css!r}" + (f" with {text!r}" if text else ""))


def wait_gone(driver: WebDriver, css: str, timeout_s: float = 60) -> None:
    """Until no element matches ``css``."""
    WebDriverWait(driver, timeout_s).until(lambda d: not d.find_elements(By.CSS_SELECTOR, css),
                                           f"{css!r} is still there")
