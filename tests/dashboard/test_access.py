"""Access control beyond the route matrix: what lists and searches show, unowned mail,
and API tokens on pages.

The walk over every route (anonymous refusals, another user's ids, CSRF) is in
test_access_matrix.py. Alice is an admin; being an admin must not let her see Bob's data.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from canary.store import Store
from tests.support.dashboard import Seeded, login


async def test_lists_show_only_own_data(client: TestClient, alice: Seeded, bob: Seeded) -> None:
    headers = {"Authorization": f"Bearer {alice.token}"}
    for path in ("/sources", "/identities", "/messages", "/findings", "/incidents"):
        response = await client.get(f"/api/v1{path}", headers=headers)
        text = await response.text()
        assert response.status == 200
        assert "Bob Store" not in text and "bob" not in text.lower(), path
    by_bob_filter = await client.get(
        f"/api/v1/messages?source_id={bob.source.id}&recipient={bob.identity.alias}",
        headers=headers,
    )
    assert (await by_bob_filter.json())["items"] == []
    traced = await client.get(f"/api/v1/trace?q={bob.identity.alias}", headers=headers)
    assert (await traced.json())["matches"] == []
    await login(client, "alice")
    for path in (
        "/",
        "/messages",
        f"/messages?source_id={bob.source.id}",
        f"/trace?q={bob.identity.alias}",
        f"/trace?q={bob.identity.display_name}",
        "/new",
        "/settings",
    ):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200, path
        assert "Bob Store" not in text and "Offer for bob" not in text, path
        if path.startswith("/trace"):
            assert "No identity matches" in text
        else:
            assert bob.identity.alias not in text, path


async def test_admin_sees_unowned_mail_but_users_do_not(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    """Unattributed mail belongs to no one: admins may read it, other users may not."""
    from canary.models import Delivery, Message

    with store.session() as session:
        message = Message(raw=b"Subject: guess\r\n\r\nx\r\n", rcpt_to=["nobody@canary.test"])
        session.add(message)
        session.flush()
        session.add(
            Delivery(
                message_id=message.id,
                recipient="nobody@canary.test",
                recipient_key="nobody@canary.test",
                kind="unattributed",
                verdict="unattributed",
            )
        )
    path = f"/api/v1/messages/{message.id}"
    as_alice = await client.get(path, headers={"Authorization": f"Bearer {alice.token}"})
    as_bob = await client.get(path, headers={"Authorization": f"Bearer {bob.token}"})
    assert as_alice.status == 200
    assert as_bob.status == 404


async def test_api_token_never_opens_pages(client: TestClient, alice: Seeded) -> None:
    response = await client.get(
        "/", headers={"Authorization": f"Bearer {alice.token}"}, allow_redirects=False
    )
    assert response.status == 401
