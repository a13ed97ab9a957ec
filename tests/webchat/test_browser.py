"""The widget in real Chromium (Debian's), against the real Rasa, action and web servers.

The tests of the first group share one page and run in file order, as one customer's visit:
open the demo page, chat, try markup, reload, get an agent's reply, use a button.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.webchat.conftest import WebChatStack, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.browser]

GREETING = "Hello! I'm the FusionDesk assistant"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Visit:
    """One browser context (its own localStorage) on the demo page, with helpers."""

    def __init__(self, browser: Any, stack: WebChatStack, **context: Any) -> None:
        self.stack = stack
        self.context = browser.new_context(**context)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on(
            "dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss())
        )
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def goto(self) -> None:
        self.page.goto(self.stack.web_url + "/")
        self.launcher.wait_for()

    @property
    def launcher(self) -> Any:
        return self.page.locator("button.fd-launcher")

    @property
    def dialog(self) -> Any:
        return self.page.get_by_role("dialog")

    @property
    def input(self) -> Any:
        return self.page.get_by_role("textbox", name="Your message")

    @property
    def log(self) -> Any:
        return self.page.get_by_role("log")

    def bot_texts(self) -> list[str]:
        return self.page.locator(".fd-msg--bot .fd-bubble").all_text_contents()

    def user_texts(self) -> list[str]:
        return self.page.locator(".fd-msg--user .fd-bubble").all_text_contents()

    def send(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")

    def wait_for_bot_count(self, count: int, selector: str = ".fd-msg--bot .fd-bubble") -> None:
        self.page.locator(selector).nth(count - 1).wait_for()

    def session_id(self) -> str:
        raw = self.page.evaluate(
            "() => { for (let i = 0; i < localStorage.length; i++) {"
            "  const k = localStorage.key(i);"
            "  if (k.startsWith('fusiondesk-webchat:')) return localStorage.getItem(k); } }"
        )
        return json.loads(raw)["sessionId"]

    def close(self) -> None:
        self.context.close()


def last_user_event(visit: Visit, text: str, timeout_s: float = 60) -> dict[str, Any]:
    """The conversation's last user event in Rasa, once its text is `text`."""
    session_id = visit.session_id()
    deadline = time.monotonic() + timeout_s
    while True:
        events = visit.stack.rasa.tracker(session_id)["events"]
        users = [e for e in events if e["event"] == "user"]
        if (users and users[-1]["text"] == text) or time.monotonic() > deadline:
            assert users, "Rasa has no message of this conversation"
            return users[-1]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def visit(browser: Any, webchat_stack: WebChatStack) -> Iterator[Visit]:
    visit = Visit(browser, webchat_stack)
    visit.goto()
    yield visit
    visit.close()


def test_demo_page_embeds_the_widget_and_the_bot_answers(visit: Visit) -> None:
    page = visit.page
    tag = page.locator("script[src$='/webchat/widget.js']")
    assert tag.get_attribute("data-server-url") == visit.stack.rasa.url
    assert "webchat/widget.js" in page.locator("pre code").text_content()
    assert visit.launcher.get_attribute("aria-expanded") == "false"

    visit.launcher.click()
    assert visit.dialog.is_visible()
    assert visit.launcher.get_attribute("aria-expanded") == "true"
    assert page.evaluate("() => document.activeElement.shadowRoot.activeElement.id") == (
        visit.input.get_attribute("id")
    )
    # The initial payload (/greet, hidden) makes the bot greet first.
    visit.wait_for_bot_count(1)
    assert visit.bot_texts()[0].startswith(GREETING)
    assert visit.user_texts() == []

    # Record whether the typing indicator shows while the bot works. The greeting's turn must
    # be over first: were its dots still showing, showing them again changes no attribute.
    page.wait_for_function(
        "() => document.querySelector('.fusiondesk-chat').shadowRoot"
        "  .querySelector('.fd-typing').hidden"
    )
    page.evaluate(
        "() => { const root = document.querySelector('.fusiondesk-chat').shadowRoot;"
        "  const typing = root.querySelector('.fd-typing'); window.__typingSeen = false;"
        "  new MutationObserver(() => { if (!typing.hidden) window.__typingSeen = true; })"
        "    .observe(typing, {attributes: true}); }"
    )
    visit.send("hi")
    visit.wait_for_bot_count(2)
    assert visit.user_texts() == ["hi"]
    assert visit.bot_texts()[1].startswith(GREETING)
    assert page.evaluate("() => window.__typingSeen") is True
    page.locator(".fd-typing").wait_for(state="hidden")
    assert visit.log.get_attribute("aria-live") == "polite"
    assert visit.errors == []


def test_markup_in_a_message_is_shown_as_text(visit: Visit) -> None:
    text = '<script>alert(1)</script><img src=x onerror="window.__xss=1"><b>bold</b>'
    visit.send(text)
    # Rasa got it verbatim (stored once the turn is over, whatever the bot made of it: the
    # knowledge-base action may take long on its first call).
    assert last_user_event(visit, text, timeout_s=240)["text"] == text
    assert visit.user_texts()[-1] == text
    log = visit.page.locator(".fd-log")
    assert log.locator("script, img, b").count() == 0
    assert visit.page.evaluate("() => window.__xss") is None
    assert visit.dialogs == []


def test_a_reload_shows_the_history_and_continues_the_conversation(visit: Visit) -> None:
    session_id = visit.session_id()
    users, bots = visit.user_texts(), visit.bot_texts()
    visit.page.reload()
    visit.launcher.wait_for()
    # The panel was open, so it opens again, with the same messages.
    visit.dialog.wait_for()
    assert visit.user_texts() == users
    assert visit.bot_texts() == bots

    visit.send("thank you")
    visit.wait_for_bot_count(len(bots) + 1)
    assert visit.session_id() == session_id
    events = visit.stack.rasa.tracker(session_id)["events"]
    user_texts = [e["text"] for e in events if e["event"] == "user"]
    assert user_texts[-2:] == [users[-1], "thank you"]
    assert user_texts.count("hi") == 1  # one conversation, not a new one after the reload


def test_a_human_agents_message_is_marked_and_kept(visit: Visit) -> None:
    session_id = visit.session_id()
    visit.stack.rasa.push_agent_message(
        session_id, "Hi, this is Alice. <i>How can I help?</i>", "Alice"
    )
    agent = visit.page.locator(".fd-msg--agent")
    agent.first.wait_for()
    assert agent.locator(".fd-sender").text_content() == "Alice · agent"
    assert agent.locator(".fd-bubble").text_content() == "Hi, this is Alice. <i>How can I help?</i>"

    # While the customer is away (no socket), the agent answers again: back on the page,
    # the history from the server shows it.
    visit.page.goto("about:blank")
    visit.stack.rasa.push_agent_message(session_id, "Your new card is on its way.", "Alice")
    visit.goto()
    visit.page.locator(".fd-msg--agent .fd-bubble", has_text="Your new card").wait_for()
    assert visit.page.locator(".fd-msg--agent").count() == 2


def test_links_and_images_are_rendered_safely(visit: Visit) -> None:
    image = visit.stack.web_url + "/webchat/card.png"
    text = (
        "See [our fees](https://example.com/fees), https://example.com/help. "
        "Not [this](javascript:alert(1)) nor javascript:alert(2)."
    )
    visit.stack.rasa.push_event(
        visit.session_id(), {"event": "bot", "text": text, "data": {"image": image}}
    )
    bubble = visit.page.locator(".fd-msg--bot .fd-bubble", has_text="See our fees")
    bubble.wait_for()
    assert bubble.text_content() == (
        "See our fees, https://example.com/help. Not [this](javascript:alert(1)) nor javascript:alert(2)."
    )
    links = bubble.locator("a")
    assert links.count() == 2
    assert [links.nth(i).get_attribute("href") for i in range(2)] == [
        "https://example.com/fees",
        "https://example.com/help",
    ]
    assert {links.nth(i).get_attribute("rel") for i in range(2)} == {"noopener noreferrer"}
    img = visit.page.locator(".fd-msg--bot img.fd-image").last
    img.wait_for(state="attached")
    assert img.get_attribute("src") == image
    assert img.get_attribute("alt")


def test_a_button_sends_its_payload_and_shows_its_title(visit: Visit) -> None:
    # A response with buttons, delivered through Rasa's output channel like any response.
    buttons = [
        {"title": "Yes, thanks", "payload": "/thank"},
        {"title": "Talk to a person", "payload": "/request_human"},
    ]
    visit.stack.rasa.push_event(
        visit.session_id(), {"event": "bot", "text": "Did that help?", "data": {"buttons": buttons}}
    )
    group = visit.page.get_by_role("group", name="Suggested replies").last
    group.wait_for()
    assert group.get_by_role("button").all_text_contents() == ["Yes, thanks", "Talk to a person"]
    bots_before = len(visit.bot_texts())
    button = group.get_by_role("button", name="Yes, thanks")
    button.click()
    assert visit.user_texts()[-1] == "Yes, thanks"
    assert button.is_disabled()  # answered: the choices cannot be sent twice
    assert group.get_by_role("button", name="Talk to a person").is_disabled()
    assert visit.page.evaluate(
        "() => document.activeElement.shadowRoot.activeElement.classList.contains('fd-input')"
    )
    event = last_user_event(visit, "/thank")
    assert event["parse_data"]["intent"]["name"] == "thank"
    assert event["metadata"]["webchat"] == {"display": "Yes, thanks"}
    visit.wait_for_bot_count(bots_before + 1)
    assert visit.bot_texts()[-1].startswith("You're welcome")


def test_keyboard_only_and_phone_width(browser: Any, webchat_stack: WebChatStack) -> None:
    visit = Visit(browser, webchat_stack, viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        visit.goto()
        page = visit.page
        focused = "() => document.activeElement.shadowRoot?.activeElement?.className ?? null"
        for _ in range(5):  # Tab past the page's own focusable parts (the code sample)
            page.keyboard.press("Tab")
            if page.evaluate(focused) == "fd-launcher":
                break
        assert page.evaluate(focused) == "fd-launcher"
        page.keyboard.press("Enter")
        visit.dialog.wait_for()
        box = visit.dialog.bounding_box()
        assert box is not None and box["x"] == 0 and box["width"] == 375
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        visit.wait_for_bot_count(1)
        page.keyboard.type("hi")
        page.keyboard.press("Enter")
        visit.wait_for_bot_count(2)
        page.keyboard.press("Escape")
        visit.dialog.wait_for(state="hidden")
        assert page.evaluate(focused) == "fd-launcher"
        assert re.match(r"Open chat", visit.launcher.get_attribute("aria-label") or "")
    finally:
        visit.close()


def test_a_server_restart_shows_reconnecting_then_carries_on(
    browser: Any, webchat_stack: WebChatStack
) -> None:
    visit = Visit(browser, webchat_stack)
    rasa = webchat_stack.rasa
    try:
        visit.goto()
        visit.launcher.click()
        visit.wait_for_bot_count(1)
        session_id = visit.session_id()
        status = visit.page.locator(".fd-status")
        assert status.is_hidden()

        rasa.stop()
        status.wait_for()
        assert status.text_content().startswith("Reconnecting")
        assert visit.page.get_by_role("status").first.is_visible()
        # Typed while the server is down: kept, and sent once it is back.
        visit.send("hi")
        visit.page.locator(".fd-msg--pending").wait_for()

        rasa.start()
        status.wait_for(state="hidden", timeout=120_000)
        visit.wait_for_bot_count(2)
        assert visit.bot_texts()[1].startswith(GREETING)
        assert visit.page.locator(".fd-msg--pending").count() == 0
        assert visit.session_id() == session_id
        assert rasa.tracker(session_id)["latest_message"]["text"] == "hi"
    finally:
        visit.close()
