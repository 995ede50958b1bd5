"""A person at the ops console, in a real headless Chromium driven over WebDriver.

Signs in with a token, finds the failed message from the Messages page, replays it with a
reason, files the delivery as its practice would (an ack file in the drop folder) and watches
the message page until it says delivered. Takes screenshots of the overview and a practice
page at 1280x800, and fails if the browser reports any Content-Security-Policy violation or
script error.

usage: console_browser.py BASE_URL TOKEN DROP_FOLDER PRACTICE SCREENSHOT_DIR
"""

import json
import os
import pathlib
import sys
import time

os.environ.setdefault("SE_OFFLINE", "true")  # never fetch a driver: Debian's is used

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import Select


def find_binary(*names):
    for n in names:
        for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/lib/chromium"]:
            p = pathlib.Path(d) / n
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    sys.exit(f"none of {names} is installed: tests/run-all installs chromium and chromium-driver")


def navigate(driver, element):
    """Clicks `element` and waits until the page it leads to has replaced this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()

    def gone():
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True

    wait_for("the next page", gone)


def wait_for(what, check, secs=40, reload_page=None):
    deadline = time.time() + secs
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)
        if reload_page:
            reload_page()


def main():
    base, token, drop, practice, shots = sys.argv[1:6]
    shots = pathlib.Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = find_binary("chromium", "chromium-browser")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(find_binary("chromedriver")))
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        driver.set_page_load_timeout(30)

        # Sign in.
        driver.get(base + "/console/")
        assert driver.current_url.endswith("/console/sign-in"), driver.current_url
        driver.find_element(By.NAME, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "button[value=token]").click()
        wait_for("the overview", lambda: driver.title.startswith("Overview"))
        assert driver.find_elements(By.CSS_SELECTOR, "figure.chart svg rect.bar"), "charts drawn"
        driver.save_screenshot(str(shots / "overview.png"))

        # Find the failed message.
        navigate(driver, driver.find_element(By.LINK_TEXT, "Messages"))
        Select(driver.find_element(By.NAME, "state")).select_by_value("failed")
        navigate(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
        rows = wait_for("failed messages listed",
                        lambda: driver.find_elements(By.CSS_SELECTOR, "table.messages tbody a.mono"))
        assert len(rows) == 1, f"{len(rows)} failed messages listed"
        message_id = rows[0].text
        navigate(driver, rows[0])
        wait_for("the message page", lambda: message_id in driver.page_source)
        assert driver.find_element(By.CSS_SELECTOR, "main > p .state").text == "failed"

        # Replay it, with a reason: a dry run first, then the replay.
        driver.find_element(By.NAME, "reason").send_keys("drop share remounted")
        navigate(driver, driver.find_element(By.CSS_SELECTOR, "button[name=dry_run][value='1']"))
        wait_for("the dry run", lambda: "would be replayed" in driver.page_source)
        driver.back()
        wait_for("the message page again", lambda: driver.find_elements(By.NAME, "reason"))
        reason = driver.find_element(By.NAME, "reason")
        reason.clear()
        reason.send_keys("drop share remounted")
        navigate(driver, driver.find_element(By.CSS_SELECTOR, "button[name=dry_run][value='0']"))
        wait_for("the replay", lambda: "1 message(s) replayed" in driver.page_source)
        navigate(driver, driver.find_element(By.LINK_TEXT, message_id))

        # The practice's system files it: an ack for each index file in the drop folder.
        folder = pathlib.Path(drop)
        acks = folder / "acks"

        def ack_all():
            idx = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
            for p in idx:
                (acks / (p.stem + ".ack")).write_text(json.dumps({"status": "delivered"}))
            return idx

        wait_for("the replayed delivery in the drop folder", ack_all)

        def shown_state():
            badge = driver.find_elements(By.CSS_SELECTOR, "main > p .state")
            return badge and badge[0].text == "delivered"

        wait_for("the message page to say delivered", shown_state, reload_page=driver.refresh)
        print(json.dumps({"replayed": message_id, "state": "delivered"}))

        # The practice page.
        driver.get(base + "/console/practices")
        navigate(driver, driver.find_element(By.LINK_TEXT, practice))
        wait_for("the practice page", lambda: driver.title.startswith("Practice " + practice))
        driver.save_screenshot(str(shots / "practice.png"))

        problems = [e for e in driver.get_log("browser")
                    if (e.get("level") == "SEVERE" or "Content Security Policy" in e.get("message", ""))
                    and "favicon.ico" not in e.get("message", "")]
        if problems:
            sys.exit(f"the browser reported problems: {problems}")
        size = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        print(json.dumps({"screenshots": [str(shots / "overview.png"), str(shots / "practice.png")],
                          "viewport": size}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
