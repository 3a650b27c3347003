"""Headless Chromium (Debian's chromium + chromium-driver packages) driven by selenium."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
# Root in a container: no sandbox; no GPU; nothing that talks to the network by itself.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def find_chromium() -> tuple[str | None, str | None]:
    browser = next((p for p in CHROMIUM_CANDIDATES if Path(p).exists()), None)
    driver = next((p for p in CHROMEDRIVER_CANDIDATES if Path(p).exists()), shutil.which("chromedriver"))
    return browser, driver


@contextmanager
def chromium(browser: str, driver_path: str) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="al-e2e-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver, base_url: str, email: str, password: str, timeout: float = 30) -> None:
    """Logs in through Label Studio's own login form (sets the session cookie)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/user/login/")
    WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.NAME, "email")))
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    WebDriverWait(driver, timeout).until(lambda d: "/user/login" not in d.current_url)


def open_labeling_stream(driver, base_url: str, project_id: int, timeout: float = 60, tab: int | None = None) -> int:
    """Clicks "Label All Tasks" in the project's Data Manager (the stream the project's sampling
    orders, as a person starts labeling), or with `tab` "Label Tasks As Displayed" in that tab (the
    stream of its tasks: Label Studio 1.23.2's "Label All Tasks" ignores a tab's filters); returns
    the id of the task the labeling page shows."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/projects/{project_id}/data" + (f"?tab={tab}" if tab is not None else ""))
    label_all = "//button[normalize-space()='Label All Tasks']"
    steps = (
        [label_all]
        if tab is None
        else [f"{label_all}/following::button[@aria-label='Toggle open'][1]", "//*[normalize-space(text())='Label Tasks As Displayed']"]
    )

    def click(xpath):
        def clicked(d) -> bool:
            found = d.find_elements(By.XPATH, xpath)
            if not found or not found[0].is_enabled():
                return False
            found[0].click()
            return True

        return clicked

    for xpath in steps:
        WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(click(xpath))

    def shown_task(d):
        # the element holds "<id>" and a child "<n> of <m>": the id is its own first text node
        text = d.execute_script(SHOWN_TASK_JS)
        text = (text or "").strip().lstrip("#")
        return int(text) if text.isdigit() else None

    return WebDriverWait(driver, timeout).until(shown_task)


SHOWN_TASK_JS = """
const id = document.querySelector('.lsf-current-task__task-id');
const loaded = document.querySelector('.lsf-choices, .lsf-richtext__line');
return id && loaded && id.childNodes.length ? id.childNodes[0].textContent : null;
"""
# The page re-renders while it loads: each reader takes what it needs in one script, so no
# element can go stale between finding it and reading it.
CHECKED_CHOICES_JS = """
return Array.from(document.querySelectorAll('.lsf-choices input:checked')).map(e => e.name);
"""
HIGHLIGHTS_JS = """
return Array.from(document.querySelectorAll('.lsf-richtext span.htx-highlight'))
  .map(e => [e.textContent, e.getAttribute('data-label') || '']);
"""


def checked_choices(driver) -> list[str]:
    """Names of the ticked choices of the labeling page."""
    return driver.execute_script(CHECKED_CHOICES_JS)


def highlighted_spans(driver) -> list[tuple[str, str]]:
    """(text, label) of every highlighted region in the text, sorted."""
    # data-label reads "<region number>:<label>"
    return sorted((text, label.split(":")[-1]) for text, label in driver.execute_script(HIGHLIGHTS_JS))


def wait_for_value(driver, read, expected, timeout: float = 20):
    """Polls `read(driver)` until it equals `expected` (the page renders regions after the text);
    returns the last value read, equal or not, for the caller's assertion."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    seen = []

    def matches(d):
        seen.append(read(d))
        return seen[-1] == expected

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.3).until(matches)
    except TimeoutException:
        pass
    return seen[-1] if seen else read(driver)
