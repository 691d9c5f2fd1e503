"""The catch-all and source-tidying API routes, as a user's script calls them."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from canary.sources import add_source
from canary.store import Store
from tests.support.dashboard import Seeded, api_call


async def test_claim_list_and_release_a_subdomain(client: TestClient, alice: Seeded) -> None:
    claim = await api_call(client, alice, "POST", "/catchall", {"domain": "Alice.canary.test"}, 201)
    assert claim["domain"] == "alice.canary.test"
    listing = await api_call(client, alice, "GET", "/catchall")
    assert [c["domain"] for c in listing["items"]] == ["alice.canary.test"]

    bad = await api_call(client, alice, "POST", "/catchall", {"domain": "a.b.canary.test"}, 400)
    assert bad["error"]["code"] == "invalid_input"
    missing = await api_call(client, alice, "POST", "/catchall", {}, 400)
    assert "domain" in missing["error"]["message"]

    await api_call(client, alice, "POST", "/catchall/alice.canary.test/release")
    assert (await api_call(client, alice, "GET", "/catchall"))["items"] == []


async def test_one_users_subdomain_is_not_anothers(
    client: TestClient, alice: Seeded, bob: Seeded
) -> None:
    await api_call(client, alice, "POST", "/catchall", {"domain": "alice.canary.test"}, 201)
    taken = await api_call(client, bob, "POST", "/catchall", {"domain": "alice.canary.test"}, 409)
    assert taken["error"]["code"] == "conflict"
    await api_call(client, bob, "POST", "/catchall/alice.canary.test/release", status=404)
    assert (await api_call(client, bob, "GET", "/catchall"))["items"] == []
    assert len((await api_call(client, alice, "GET", "/catchall"))["items"]) == 1


async def test_rename_merge_and_revoke_a_sender(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    with store.session() as session:
        extra = add_source(session, alice.user, "shopx2", domains=["mailer.test"])
    path = f"/sources/{extra.id}"

    revoked = await api_call(
        client, alice, "POST", f"{path}/senders/remove", {"domain": "mailer.test"}
    )
    assert revoked["authorised_senders"] == []
    await api_call(client, alice, "POST", f"{path}/senders/remove", {"domain": "mailer.test"}, 404)

    renamed = await api_call(client, alice, "POST", f"{path}/rename", {"name": "Shop X Two"})
    assert renamed["name"] == "Shop X Two" and renamed["slug"] == "shop-x-two"
    clash = await api_call(client, alice, "POST", f"{path}/rename", {"name": "shop x"}, 409)
    assert "merge them instead" in clash["error"]["message"]

    # Into another user's source, or someone else's source into yours: not found.
    await api_call(client, alice, "POST", f"{path}/merge", {"into": bob.source.id}, 404)
    await api_call(client, bob, "POST", f"{path}/merge", {"into": bob.source.id}, 404)
    await api_call(client, alice, "POST", f"{path}/merge", {"into": "shop"}, 400)

    kept = await api_call(client, alice, "POST", f"{path}/merge", {"into": alice.source.id})
    assert kept["id"] == alice.source.id
    await api_call(client, alice, "GET", path, status=404)
    source = await api_call(client, alice, "GET", f"/sources/{alice.source.id}")
    assert source["identity_count"] == 1
