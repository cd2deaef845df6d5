"""The dashboard in a real headless browser (Debian's chromium through /usr/bin/chromedriver,
driven by Selenium; Selenium Manager is never asked to download anything): sign in with the key
`openmonetize admin create-customer` prints, buy credits and see the balance, post events
through the sandbox and watch them travel, see the balance and the usage chart change, create a
burn-table version after previewing it, run a rebilling dry run, then apply it. Screenshots of each step go
to .artifacts/screenshots/ (OM_SCREENSHOTS overrides)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("OM_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"))
WAIT_S = 30


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"{missing} missing: `python -m deploy.local_stack.browser` installs Debian's chromium (make test does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path too, Selenium Manager is not consulted at all
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.implicitly_wait(0)
    try:
        yield browser
    finally:
        browser.save_screenshot(str(SHOTS / "99-last-page.png"))  # where a failing run stopped
        browser.quit()


def create_customer(name: str) -> dict:
    """The key exactly as a new user gets it: `openmonetize admin create-customer`."""
    result = subprocess.run([sys.executable, "-m", "openmonetize", "admin", "create-customer", "--json", name],
                            capture_output=True, text=True, timeout=60, check=True)
    return orjson.loads(result.stdout)


def test_sign_in_fund_sandbox_burn_table_version_and_rebilling_dry_run(settings, driver):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)
    # A running run's page reloads itself every 2 s: elements go stale or are briefly absent.
    run_wait = WebDriverWait(driver, 60, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))
    base = settings.api_url
    customer = create_customer("browser-test")
    headers = {"X-OM-Api-Key": customer["api_key"]}
    table = httpx.post(f"{base}/v1/burn-tables", headers=headers, timeout=30, json={
        "name": "main", "rules": {"default": {"input_tokens": "1", "output_tokens": "4", "per_unit": 1000}}}).json()

    def shot(name: str) -> None:
        driver.save_screenshot(str(SHOTS / f"{name}.png"))

    def text(element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    def fill(name: str, value: str, form: str) -> None:
        field = driver.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
        field.clear()
        field.send_keys(value)

    def wallet_balance() -> Decimal:
        driver.get(f"{base}/dashboard/overview")
        cell = driver.find_element(By.CSS_SELECTOR, "#wallets tr[data-wallet] .balance")
        return Decimal(cell.text.replace(",", ""))

    # Sign in: the key goes in a POST form, never in the URL.
    driver.get(f"{base}/dashboard")
    wait.until(ec.url_contains("/dashboard/signin"))
    driver.find_element(By.ID, "api_key").send_keys(customer["api_key"])
    shot("01-signin")
    driver.find_element(By.ID, "signin").click()
    wait.until(ec.url_contains("/dashboard/overview"))
    assert customer["api_key"] not in driver.current_url and text("tenant") == customer["customer_id"]

    # Buy 100 credits for the tenant's own wallet and see the balance.
    driver.get(f"{base}/dashboard/wallets")
    fill("amount", "100", "credits-form")
    driver.find_element(By.CSS_SELECTOR, "#credits-form button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "notice"), "balance now 100"))
    assert wallet_balance() == Decimal(100)
    shot("02-overview-funded")

    # Two events through the sandbox; each journey reaches the ledger.
    driver.get(f"{base}/dashboard/sandbox")
    assert "om.events.track" in text("sdk-snippet") and "X-OM-User-Id" in text("proxy-snippet")
    for input_tokens in ("1000", "3000"):
        fill("input_tokens", input_tokens, "sandbox-form")
        driver.find_element(By.ID, "sb-send").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "sb-status"), "journey over"))
        stages = driver.find_elements(By.CSS_SELECTOR, "#journey li")
        assert [li.get_attribute("class") for li in stages] == ["done"] * 6, [li.text for li in stages]
    shot("03-sandbox-journey")

    # 1000 + 3000 input tokens and 2 x 300 output tokens at 1 and 4 per 1000: 4 + 2.4 = 6.4 credits.
    assert wallet_balance() == Decimal("93.6")
    bars = driver.find_elements(By.CSS_SELECTOR, "#burn-hourly rect.bar")
    burned = sum((Decimal(bar.get_attribute("data-value")) for bar in bars), Decimal(0))
    if burned != Decimal("6.4"):  # the ClickHouse sink lands rows about a second after the ledger
        wait.until(lambda d: (d.refresh() or True) and sum(
            (Decimal(b.get_attribute("data-value")) for b in d.find_elements(By.CSS_SELECTOR, "#burn-hourly rect.bar")),
            Decimal(0)) == Decimal("6.4"))
    assert text("credits") == "6.4"
    shot("04-overview-after-sandbox")

    # A new burn-table version, previewed against last month's usage first.
    driver.get(f"{base}/dashboard/burn-tables/{table['burn_table_id']}")
    rules = driver.find_element(By.ID, "rules")
    rules.clear()
    rules.send_keys('{"default": {"input_tokens": "2", "output_tokens": "8", "per_unit": 1000}}')
    driver.find_element(By.ID, "preview-button").click()
    wait.until(ec.presence_of_element_located((By.ID, "preview")))
    assert (text("preview-current"), text("preview-proposed"), text("preview-difference")) == ("6.4", "12.8", "6.4")
    shot("05-burn-table-preview")
    driver.find_element(By.ID, "create-version").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "notice"), "Version 2 created"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#versions tbody tr")) == 2
    shot("06-burn-table-version-2")

    # A rebilling dry run of the last week re-rating the two events with version 2.
    driver.get(f"{base}/dashboard/rebilling")
    fill("burn_table_version", "2", "new-run")
    driver.find_element(By.ID, "dry-run").click()
    wait.until(ec.url_contains("/dashboard/rebilling/rr_"))
    run_wait.until(lambda d: d.find_element(By.ID, "run-status").text in ("completed", "failed"))
    shot("07-rebilling-dry-run")
    assert (text("run-mode"), text("run-status"), text("run-events")) == ("dry_run", "completed", "2")
    assert text("run-difference") == "6.4"
    assert wallet_balance() == Decimal("93.6")  # a dry run books nothing

    # Apply it: the 6.4 credits difference is debited.
    driver.back()
    driver.refresh()
    wait.until(ec.presence_of_element_located((By.ID, "apply-run")))
    driver.find_element(By.CSS_SELECTOR, "#apply-run button").click()
    wait.until(ec.alert_is_present()).accept()
    run_wait.until(
        lambda d: "/dashboard/rebilling/rr_" in d.current_url and d.find_element(By.ID, "run-mode").text == "apply"
        and d.find_element(By.ID, "run-status").text in ("completed", "failed"))
    shot("08-rebilling-applied")
    assert (text("run-status"), text("run-difference")) == ("completed", "6.4")
    wait.until(lambda d: wallet_balance() == Decimal("87.2"))
