"""Benchmark: import a study of 10,000 sites (one persona each), record signup times, and
compute its report over simulated findings. Prints the figures; asserts nothing.

    python bench/study.py [--sites 10000] [--database-url URL]

Default database: a fresh SQLite file in a temporary directory. Simulated mail is written
as rows (one welcome message per site, third-party mail for a share of the sites), since
this measures the study code, not the SMTP path (see bench/ingest.py for that).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.models import Delivery, Finding, Message, utcnow  # noqa: E402
from canary.report import study_report  # noqa: E402
from canary.store import Store  # noqa: E402
from canary.study import import_study, parse_plan, record_given  # noqa: E402
from canary.users import add_user  # noqa: E402


def _plan(sites: int) -> str:
    rows = ["name,url,domains,category"]
    rows += [f"Site {i},https://site{i}.test,site{i}.test,cat{i % 12}" for i in range(sites)]
    return "\n".join(rows) + "\n"


def _simulate_mail(store: Store, identities: list, owner_id: int, rng: random.Random) -> int:
    """One welcome per site; 20% of sites also reach 1-4 of 200 third parties."""
    now = utcnow()
    orgs = [f"broker{i}.test" for i in range(200)]
    raw = b"From: x@x.test\r\nSubject: hi\r\n\r\nhi\r\n"
    with store.session() as session:
        messages, plan = [], []
        for identity in identities:
            senders = [(f"site{identity.source_id}.test", "expected")]
            if rng.random() < 0.2:
                senders += [(o, "shared") for o in rng.sample(orgs, rng.randint(1, 4))]
            for org, verdict in senders:
                messages.append({"raw": raw, "size": len(raw), "rcpt_to": [identity.alias],
                                 "state": "analysed", "sender_org": org, "received_at": now,
                                 "peer_ip": "", "helo": "", "mail_from": "", "tls": False,
                                 "attempts": 1})  # fmt: skip
                plan.append((identity, org, verdict))
        ids = list(session.scalars(insert(Message).returning(Message.id), messages))
        deliveries = [
            {"message_id": mid, "recipient": i.alias, "recipient_key": i.alias, "kind": "canary",
             "identity_id": i.id, "source_id": i.source_id, "owner_id": owner_id,
             "verdict": verdict, "received_at": now}
            for mid, (i, _, verdict) in zip(ids, plan, strict=True)
        ]  # fmt: skip
        dids = list(session.scalars(insert(Delivery).returning(Delivery.id), deliveries))
        session.execute(
            insert(Finding),
            [{"delivery_id": did, "owner_id": owner_id, "source_id": i.source_id,
              "verdict": verdict, "sender_org": org, "evidence": [], "sentence": "",
              "created_at": now}
             for did, (i, org, verdict) in zip(dids, plan, strict=True)],
        )  # fmt: skip
    return len(plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    store = Store(url)
    store.upgrade()
    rng = random.Random(7)
    with store.session() as session:
        owner = add_user(session, f"bench{rng.randrange(10**6)}", admin=True)
    figures: list[tuple[str, float]] = []

    t0 = time.perf_counter()
    sites = parse_plan(_plan(args.sites))
    with store.session() as session:
        result = import_study(session, owner, f"Bench {rng.randrange(10**6)}", sites,
                              domain="canary.test", seed=7)  # fmt: skip
        study, identities = result.study, result.identities
    figures.append(("import plan + sources + personas", time.perf_counter() - t0))

    t0 = time.perf_counter()
    now = utcnow()
    with store.session() as session:
        record_given(session, owner, [(str(i.id), now - timedelta(days=rng.randint(1, 90)))
                                      for i in identities])  # fmt: skip
    figures.append(("record signup times (bulk)", time.perf_counter() - t0))

    t0 = time.perf_counter()
    assert owner.id is not None
    rows = _simulate_mail(store, identities, owner.id, rng)
    figures.append((f"simulate {rows:,} deliveries + findings (setup)", time.perf_counter() - t0))

    t0 = time.perf_counter()
    with store.session() as session:
        report = study_report(session, study)
    figures.append(("report", time.perf_counter() - t0))

    print(f"backend {store.backend}, {args.sites:,} sites, {len(identities):,} personas")
    for label, seconds in figures:
        print(f"  {label:<45} {seconds:8.2f} s")
    study_total = figures[0][1] + figures[1][1] + figures[3][1]
    print(f"  {'study import + signup times + report':<45} {study_total:8.2f} s")
    data = report.as_dict()
    print(f"  report: {data['sites_with_shared']:,} sites shared "
          f"({data['share_with_shared']:.1%}), {len(data['graph']['links']):,} graph edges, "
          f"median days {data['days_to_first_third_party']['median']}")  # fmt: skip
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
