"""Build a large canarytrace database fast, for bench/dashboard.py.

    python bench/generate.py --database-url URL [--messages 1000000]
                             [--identities 100000] [--sources 10000]

Rows go in with bulk inserts (thousands per statement), not through SMTP and analysis:
one user owns every source (a researcher's study, the hardest case for the overview);
each source has one authorised sender domain and ``identities / sources`` identities;
each message has one delivery to an identity and one current finding (mostly
``expected``, some ``shared``, ``breach`` and ``after_retirement``), spread over the
last year; an incident per source and leak kind seen. The schema is migrated first.
Prints the counts, the time taken and an API token for the user (also written to
``--token-file``); the user's password is ``bench-password``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.models import (  # noqa: E402
    AuthorisedSender,
    Delivery,
    Finding,
    Identity,
    Incident,
    Message,
    Source,
)
from canary.store import Store  # noqa: E402
from canary.users import add_user, new_token  # noqa: E402

CHUNK = 10_000
PASSWORD = "bench-password"  # of user bench, for the dashboard pages
DOMAIN = "canary.test"
VERDICTS = ("expected",) * 80 + ("shared",) * 15 + ("breach",) * 4 + ("after_retirement",)
FIRST = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas")
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "bri", "dal", "fen", "gor", "hul")


def surname(n: int) -> str:
    """A distinct made-up surname for every ``n`` below 13**4 (four syllables)."""
    parts = []
    for _ in range(4):
        n, r = divmod(n, len(SYLLABLES))
        parts.append(SYLLABLES[r])
    return "".join(parts).capitalize()


def raw_message(n: int, org: str, to: str, when: datetime) -> bytes:
    return (
        f"From: Offers <news@{org}>\r\nTo: {to}\r\nSubject: Offer {n}\r\n"
        f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}\r\nMessage-ID: <{n}@{org}>\r\n\r\n"
        f"Our offers for you this week, number {n}.\r\n"
    ).encode()


def evidence(verdict: str, org: str) -> dict[str, str]:
    """One evidence item as canary.evidence_items stores it."""
    if verdict == "expected":
        return {"code": "dkim_pass", "detail": f"d={org}"}
    return {"code": "not_authorised_for_source", "detail": ""}


def bulk(store: Store, table: Any, rows: list[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(table), rows)


def generate(store: Store, messages: int, identities: int, sources: int, seed: int = 8) -> str:
    """Fill the database; return a new API token for the owner of everything."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    with store.session() as session:
        owner = add_user(session, "bench", password=PASSWORD)
        _, token = new_token(session, owner, "bench")
        owner_id = owner.id
    bulk(
        store,
        Source.__table__,  # type: ignore[attr-defined]
        [
            {"owner_id": owner_id, "name": f"Site {i}", "slug": f"site-{i}", "notes": "",
             "created_at": now - timedelta(days=400)}
            for i in range(sources)
        ],
    )  # fmt: skip
    with store.engine.connect() as conn:
        source_ids = [r[0] for r in conn.execute(select(Source.id).order_by(Source.id))]  # type: ignore[call-overload]
    bulk(
        store,
        AuthorisedSender.__table__,  # type: ignore[attr-defined]
        [
            {"source_id": sid, "domain": f"site{i}.test", "reason": "own", "added_at": now}
            for i, sid in enumerate(source_ids)
        ],
    )
    per_source = max(1, identities // sources)
    for start in range(0, identities, CHUNK):
        rows = []
        for i in range(start, min(identities, start + CHUNK)):
            name = f"{FIRST[i % len(FIRST)]} {surname(i)}"
            rows.append(
                {"owner_id": owner_id, "source_id": source_ids[(i // per_source) % sources],
                 "alias": f"c{i:07x}q@{DOMAIN}", "style": "token", "display_name": name,
                 "name_key": name.lower(), "reference": f"R{i:07d}",
                 "created_at": now - timedelta(days=380)}
            )  # fmt: skip
        bulk(store, Identity.__table__, rows)  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        identity_rows = list(
            conn.execute(
                select(Identity.id, Identity.source_id, Identity.alias).order_by(Identity.id)
            )  # type: ignore[call-overload]
        )
    orgs = [f"sender{i}.test" for i in range(2000)]
    first_id = None
    incidents: dict[tuple[int, str], list[datetime]] = {}
    for start in range(0, messages, CHUNK):
        count = min(messages, start + CHUNK) - start
        picks = [identity_rows[rng.randrange(len(identity_rows))] for _ in range(count)]
        # Received times grow with the message id, as they do in a real database.
        times = [now - timedelta(seconds=(messages - n) * 31_536_000 // messages) for n in
                 range(start, start + count)]  # fmt: skip
        message_rows = []
        for k, (n, (_, _, alias)) in enumerate(
            zip(range(start, start + count), picks, strict=True)
        ):
            org = orgs[rng.randrange(len(orgs))]
            raw = raw_message(n, org, alias, times[k])
            message_rows.append(
                {"received_at": times[k], "peer_ip": "192.0.2.1", "helo": f"mx.{org}",
                 "mail_from": f"bounce@{org}", "rcpt_to": [alias], "tls": False,
                 "size": len(raw), "raw": raw, "state": "analysed", "attempts": 1,
                 "header_message_id": f"<{n}@{org}>", "subject": f"Offer {n}",
                 "from_address": f"news@{org}", "sender_org": org, "analysed_at": times[k]}
            )  # fmt: skip
        bulk(store, Message.__table__, message_rows)  # type: ignore[attr-defined]
        if first_id is None:
            with store.engine.connect() as conn:
                first_id = conn.execute(select(Message.id).order_by(Message.id).limit(1)).scalar()  # type: ignore[call-overload]
        message_ids = range(first_id + start, first_id + start + count)
        verdicts = [VERDICTS[rng.randrange(len(VERDICTS))] for _ in range(count)]
        rows = (picks, verdicts, times)
        bulk(
            store,
            Delivery.__table__,  # type: ignore[attr-defined]
            [
                {"message_id": mid, "recipient": alias, "recipient_key": alias,
                 "kind": "canary", "identity_id": iid, "source_id": sid, "owner_id": owner_id,
                 "verdict": verdict, "received_at": when}
                for mid, (iid, sid, alias), verdict, when in zip(message_ids, *rows, strict=True)
            ],
        )  # fmt: skip
        # Deliveries were inserted in message order, one each: their ids follow too.
        with store.engine.connect() as conn:
            first_delivery = conn.execute(
                select(Delivery.id).where(Delivery.message_id == first_id + start)  # type: ignore[call-overload]
            ).scalar_one()
        bulk(
            store,
            Finding.__table__,  # type: ignore[attr-defined]
            [
                {"delivery_id": first_delivery + k, "owner_id": owner_id, "source_id": sid,
                 "verdict": verdict, "sender_org": message_rows[k]["sender_org"],
                 "evidence": [evidence(verdict, message_rows[k]["sender_org"])],
                 "sentence": f"{verdict} mail from {message_rows[k]['sender_org']}",
                 "changes": [], "created_at": when}
                for k, ((_, sid, _), verdict, when) in enumerate(zip(*rows, strict=True))
            ],
        )  # fmt: skip
        for (_, sid, _), verdict, when in zip(picks, verdicts, times, strict=True):
            if verdict != "expected":
                incidents.setdefault((sid, verdict), []).append(when)
        print(f"  {start + count} messages", end="\r", flush=True, file=sys.stderr)
    incident_rows = [
        {"owner_id": owner_id, "source_id": sid, "kind": kind, "status": "open",
         "first_seen": min(seen), "last_seen": max(seen), "finding_count": len(seen),
         "organisations": [], "updated_at": max(seen)}
        for (sid, kind), seen in incidents.items()
    ]  # fmt: skip
    for start in range(0, len(incident_rows), CHUNK):
        bulk(store, Incident.__table__, incident_rows[start : start + CHUNK])  # type: ignore[attr-defined]
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="an empty database")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--token-file", help="write the API token here")
    args = parser.parse_args()
    store = Store(args.database_url)
    store.upgrade()
    start = time.perf_counter()
    token = generate(store, args.messages, args.identities, args.sources)
    elapsed = time.perf_counter() - start
    if store.backend == "sqlite":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    print(
        f"{args.messages} messages, {args.identities} identities, {args.sources} sources "
        f"in {elapsed:.0f} s ({args.messages / elapsed:.0f} messages/s with their rows)"
    )
    print(f"API token of user bench: {token}")
    if args.token_file:
        Path(args.token_file).write_text(token + "\n")
    store.close()


if __name__ == "__main__":
    main()
