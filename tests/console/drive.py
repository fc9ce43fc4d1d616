"""Drives the operations console in Debian's Chromium (headless) for tests/api/console.rs.

Steps are synchronised with the Rust test over stdin/stdout, one line each way:
  -> READY <riders>        signed in; the rider count the page shows
  <- CONNECTED <riders>    two sockets connected: wait for the page to show this count
  -> COUNTED
  -> SENT <message_id>     the announcement form was sent
  <- LOOKUP <message_id>   look this receipt up and wait for an `acked` recipient
  -> DONE                  and a screenshot was saved
Any failure prints FAIL <why> and exits 1. Nothing is downloaded: the browser is the
executable given.
"""
import sys

from playwright.sync_api import sync_playwright, expect

base, token, chromium, screenshot = sys.argv[1:5]
TIMEOUT = 20_000


def say(line):
    print(line, flush=True)


def hear(word):
    line = sys.stdin.readline().split()
    if not line or line[0] != word:
        raise RuntimeError(f"expected {word}, got {line}")
    return line[1:]


def rider_count(page):
    return page.locator('#sockets-by-role tr[data-role="rider"] td.count')


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True,
                                args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/console")
        page.get_by_label("token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        count = rider_count(page)
        expect(count).to_have_text("0", timeout=TIMEOUT)
        say(f"READY {count.inner_text()}")

        (riders,) = hear("CONNECTED")
        expect(count).to_have_text(riders, timeout=TIMEOUT)
        say("COUNTED")

        page.get_by_label("every connected socket of a role").check()
        page.locator("#send-role").select_option("rider")
        page.locator("#send-title").fill("Console announcement")
        page.locator("#send-content").fill("sent from the console")
        page.get_by_role("button", name="Send").click()
        result = page.locator("#send-result")
        expect(result).to_contain_text("sent: message_id", timeout=TIMEOUT)
        say(f"SENT {result.get_attribute('data-message-id')}")

        (message_id,) = hear("LOOKUP")
        page.locator("#lookup-kind").select_option("message")
        page.locator("#lookup-id").fill(message_id)
        page.get_by_role("button", name="Look up").click()
        state = page.locator(f'table.receipt[data-message-id="{message_id}"] td.state')
        expect(state).to_have_text("acked", timeout=TIMEOUT)
        page.screenshot(path=screenshot, full_page=True)
        if errors:
            raise RuntimeError(f"page errors: {errors}")
        # Nothing of the token was kept by the page.
        kept = page.evaluate("() => JSON.stringify([localStorage, sessionStorage, document.cookie])")
        if token in kept:
            raise RuntimeError("the token was stored")
        say("DONE")
    except Exception as e:  # the test prints this line
        say(f"FAIL {type(e).__name__}: {e}".replace("\n", " "))
        sys.exit(1)
    finally:
        browser.close()
