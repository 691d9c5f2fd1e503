"""The catch-all page and tidying a source (rename, merge, revoke) through the real app."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from canary.dashboard.mailpages import SOURCE_MENU_LIMIT
from sqlmodel import select

from canary.catchall import claim_subdomain, issue_on_first_use
from canary.models import AuthorisedSender, CatchAllDomain, Delivery, Identity, Source
from canary.sources import add_source
from canary.store import Store
from tests.support.dashboard import Seeded, add_sources, login


async def test_claiming_and_releasing_a_subdomain(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    csrf = await login(client, "alice")
    page = await client.get("/catchall")
    assert page.status == 200 and "None yet" in await page.text()

    claimed = await client.post("/catchall", data={"domain": "alice.canary.test", "csrf": csrf})
    assert claimed.status == 200 and "*@alice.canary.test" in await claimed.text()
    refused = await client.post("/catchall", data={"domain": "www.canary.test", "csrf": csrf})
    assert refused.status == 400 and "reserved" in await refused.text()
    forged = await client.post("/catchall", data={"domain": "x.canary.test"})
    assert forged.status == 403  # no CSRF token, nothing claimed

    with store.session() as session:
        claims = session.exec(select(CatchAllDomain)).all()
    assert [(c.domain, c.owner_id) for c in claims] == [("alice.canary.test", alice.user.id)]

    released = await client.post(
        "/catchall/release", data={"domain": "alice.canary.test", "csrf": csrf}
    )
    assert released.status == 200 and "released" in await released.text()
    with store.session() as session:
        assert session.exec(select(CatchAllDomain)).all() == []


async def test_another_users_subdomain_cannot_be_claimed_or_released(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    with store.session() as session:
        session.add(CatchAllDomain(owner_id=bob.user.id, domain="bob.canary.test"))  # type: ignore[arg-type]
    csrf = await login(client, "alice")
    taken = await client.post("/catchall", data={"domain": "bob.canary.test", "csrf": csrf})
    assert taken.status == 400 and "already claimed" in await taken.text()
    release = await client.post(
        "/catchall/release", data={"domain": "bob.canary.test", "csrf": csrf}
    )
    assert release.status == 404
    with store.session() as session:
        assert session.exec(select(CatchAllDomain.owner_id)).all() == [bob.user.id]


async def test_renaming_merging_and_revoking_on_the_source_page(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    with store.session() as session:
        extra = add_source(session, alice.user, "shopx2", domains=["mailer.test"])
    csrf = await login(client, "alice")
    page = await (await client.get(f"/sources/{extra.id}")).text()
    assert "Merge into" in page and "Stop authorising mailer.test" in page

    await client.post(
        f"/sources/{extra.id}/senders/remove", data={"domain": "mailer.test", "csrf": csrf}
    )
    merged = await client.post(
        f"/sources/{extra.id}/merge",
        data={"into": str(alice.source.id), "csrf": csrf},
        allow_redirects=False,
    )
    assert merged.status == 303 and merged.headers["Location"] == f"/sources/{alice.source.id}"
    renamed = await client.post(
        f"/sources/{alice.source.id}/rename",
        data={"name": "Shop X Ltd", "csrf": csrf},
        allow_redirects=False,
    )
    assert renamed.status == 303
    # Bob's source is not Alice's to merge into: as if it did not exist.
    other = await client.post(
        f"/sources/{alice.source.id}/merge", data={"into": str(bob.source.id), "csrf": csrf}
    )
    assert other.status == 404

    with store.session() as session:
        assert session.get(Source, extra.id) is None
        kept = session.get(Source, alice.source.id)
        assert kept is not None and kept.name == "Shop X Ltd"
        assert session.exec(
            select(AuthorisedSender.domain).where(AuthorisedSender.source_id == kept.id)
        ).all() == ["shopx.test"]
        # Bob's data is untouched.
        bob_source = session.get(Source, bob.source.id)
        assert bob_source is not None and bob_source.name == bob.source.name
        assert session.get(Identity, bob.identity.id).source_id == bob.source.id  # type: ignore[union-attr]
        assert session.get(Delivery, bob.delivery.id).source_id == bob.source.id  # type: ignore[union-attr]


async def test_a_catch_all_identity_page_has_no_empty_name(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    with store.session() as session:
        claim_subdomain(session, alice.user, "alice.canary.test", ["canary.test"])
        first = issue_on_first_use(session, "forum@alice.canary.test", daily_limit=10)
        assert first is not None
        identity_id = first.identity.id
    await login(client, "alice")
    page = await (await client.get(f"/identities/{identity_id}")).text()
    assert "forum@alice.canary.test" in page and 'id="name"' not in page
    assert "no tagged name" in page


async def test_with_many_sources_the_merge_target_is_typed_by_name(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    add_sources(store, alice.user, (f"Site {n}" for n in range(SOURCE_MENU_LIMIT + 1)))
    with store.session() as session:
        extra = add_source(session, alice.user, "shopx2", domains=[])
    csrf = await login(client, "alice")
    page = await (await client.get(f"/sources/{extra.id}")).text()
    assert 'placeholder="name of the source"' in page and "<option" not in page
    merged = await client.post(
        f"/sources/{extra.id}/merge", data={"into": "Shop X", "csrf": csrf}, allow_redirects=False
    )
    assert merged.headers["Location"] == f"/sources/{alice.source.id}"
    with store.session() as session:
        assert session.get(Source, extra.id) is None
