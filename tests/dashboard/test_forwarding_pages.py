"""Forwarding and alert pages: add an address, verify it from the mailed link, add a rule
and a webhook channel; the verification page works without logging in."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlmodel import select

from canary.config import Settings
from canary.models import AlertChannel, ForwardAddress, ForwardRule
from canary.store import Store
from tests.support.dashboard import Seeded, build_app, csrf_of, login
from tests.support.outbound import RecordingRelay, relay  # noqa: F401


async def test_address_verification_rule_and_channel(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    store: Store,
    alice: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    settings = make_settings(
        relay_host="127.0.0.1", relay_port=relay.port, relay_starttls=False,
        public_url="http://dash.example",
    )  # fmt: skip
    app = build_app(settings, store)
    client = await aiohttp_client(app)
    anonymous = await client.get("/forwarding", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")

    csrf = await login(client, "alice")
    page = await client.post(
        "/forwarding/addresses", data={"address": "alice@home.example", "csrf": csrf}
    )
    assert page.status == 200
    assert "A verification mail went to alice@home.example" in await page.text()
    (mail,) = relay.messages
    assert mail.rcpt_tos == ["alice@home.example"]
    link = re.search(rb"http://dash\.example(/forwarding/verify/\S+)", mail.data)
    assert link is not None
    path = link.group(1).decode()

    # Opened from the mailbox, where nobody is logged in: a page with a confirm button.
    stranger = await aiohttp_client(app)
    confirm = await stranger.get(path)
    assert confirm.status == 200 and "Confirm alice@home.example" in await confirm.text()
    with store.session() as session:
        assert session.exec(select(ForwardAddress)).one().verified_at is None  # GET changes nothing
    done = await stranger.post(path, data={"csrf": csrf_of(await confirm.text())})
    assert done.status == 200 and "is verified" in await done.text()
    again = await stranger.get(path)
    assert again.status == 404

    response = await client.post(
        "/forwarding/rules",
        data={"target": alice.source.slug, "address": "alice@home.example", "drop_breach": "on",
              "csrf": csrf},
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 303
    listing = await (await client.get("/forwarding")).text()
    assert "verified" in listing and f"source {alice.source.name}" in listing
    with store.session() as session:
        rule = session.exec(select(ForwardRule)).one()
        assert rule.source_id == alice.source.id and rule.drop_breach

    added = await client.post(
        "/alerts/channels",
        data={"kind": "webhook", "target": "https://hooks.example/canary", "digest": "daily",
              "immediate": "on", "csrf": csrf},
    )  # fmt: skip
    text = await added.text()
    assert added.status == 200 and "Signing secret" in text
    with store.session() as session:
        channel = session.exec(select(AlertChannel)).one()
        assert channel.secret and channel.secret in text and channel.digest == "daily"
    refused = await client.post(
        "/alerts/channels",
        data={"kind": "email", "target": "someone@else.example", "csrf": csrf},
    )
    assert refused.status == 400 and "not a verified address" in await refused.text()
    test = await client.post(
        f"/alerts/channels/{channel.id}/test", data={"csrf": csrf}, allow_redirects=False
    )
    assert test.status == 303
    log = await (await client.get("/alerts")).text()
    assert "test" in log and "pending" in log


async def test_unknown_verification_link(client: Any) -> None:
    response = await client.get("/forwarding/verify/not-a-token")
    assert response.status == 404
    assert "unknown, used or expired" in await response.text()
