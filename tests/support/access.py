"""Access-control helpers: one of everything a user can own, and routes made concrete.

:func:`owned_objects` gives a seeded user every kind of object a route can name;
:func:`concrete_paths` turns a route template from the app's router into the URLs that
name those objects. A route whose path names something this module does not know fails
the test that walks the router, so a new route cannot go unchecked.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from aiohttp import web
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, select

import canary.models  # noqa: F401 - registers every table in the metadata
from canary.models import ApiToken
from canary.store import Store
from tests.support.dashboard import Seeded

# Path segment before ``{id}`` -> the kind of object the id names.
KINDS = {
    "sources": "source",
    "identities": "identity",
    "messages": "message",
    "incidents": "incident",
    "tokens": "token",
    "addresses": "address",
    "rules": "rule",
    "forwards": "forward",
    "channels": "channel",
    "alerts": "alert",
    "studies": "study",
    "seeds": "seed",
}
# Other path parameters: every value a handler acts on, keyed by (parameter, the
# segment two before it) or the parameter alone.
VALUES: dict[tuple[str, str] | str, list[str]] = {
    ("action", "channels"): ["enable", "disable", "test"],
    ("action", "incidents"): ["confirm", "dismiss", "reopen"],
    "file": ["report.json", "graph.json", "graph.graphml", "personas.csv"],
    "index": ["0"],
}
_PARAM = re.compile(r"^\{(\w+)\}$")
# Columns that record use, not content: reading with a token stamps it.
VOLATILE_COLUMNS = {"last_used_at"}


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route, HEAD and static files left out."""
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path.startswith("/static"):
            continue
        out.append((route.method, path))
    return sorted(set(out))


def owned_objects(store: Store, seeded: Seeded) -> dict[str, str]:
    """Ids (as text) of one object of every kind owned by ``seeded``, made through the
    real service functions and tables; ``domain`` is a claimed catch-all subdomain."""
    from canary.catchall import claim_subdomain
    from canary.models import Alert, AlertChannel, Forward, ForwardAddress, ForwardRule, utcnow
    from canary.seeds import new_seed_batch
    from canary.study import import_study, parse_plan

    user, name = seeded.user, seeded.user.name
    user_id, now = user.id or 0, utcnow()
    plan = parse_plan(f"name,domains\n{name} site,{name}site.test\n")
    with store.session() as session:
        token = session.exec(select(ApiToken).where(ApiToken.user_id == user_id)).first()
        address = ForwardAddress(owner_id=user_id, address=f"{name}@home.example", verified_at=now)
        channel = AlertChannel(owner_id=user_id, kind="webhook", target="https://h.example/")
        session.add_all([address, channel])
        session.flush()
        assert address.id is not None and channel.id is not None and token is not None
        rule = ForwardRule(owner_id=user_id, source_id=seeded.source.id, address_id=address.id)
        forward = Forward(delivery_id=seeded.delivery.id or 0, address_id=address.id,
                          owner_id=user_id, verdict="shared", state="failed")  # fmt: skip
        alert = Alert(channel_id=channel.id, owner_id=user_id, event="test", state="failed")
        session.add_all([rule, forward, alert])
        study = import_study(session, user, f"{name} study", plan, domain="canary.test",
                             auto_confirm=True).study  # fmt: skip
        batch = new_seed_batch(session, user, "Vendor", 1, domain="canary.test").batch
        claim = claim_subdomain(session, user, f"{name}-inbox.canary.test", ["canary.test"])
        session.flush()
        ids: dict[str, Any] = {
            **seeded.ids(), "token": token.id, "address": address.id, "rule": rule.id,
            "forward": forward.id, "channel": channel.id, "alert": alert.id,
            "study": study.id, "seed": batch.id, "domain": claim.domain,
        }  # fmt: skip
    return {k: str(v) for k, v in ids.items()}


def concrete_paths(template: str, objects: dict[str, str]) -> list[str]:
    """Every URL of ``template`` naming ``objects``; AssertionError for an unknown parameter."""
    parts = template.strip("/").split("/")
    choices: list[list[str]] = []
    for i, part in enumerate(parts):
        match = _PARAM.match(part)
        if match is None:
            choices.append([part])
            continue
        param = match.group(1)
        before = parts[i - 1] if i >= 1 else ""
        two_before = parts[i - 2] if i >= 2 else ""
        if param == "id":
            assert before in KINDS, f"{template}: add the kind of '{before}' ids to KINDS"
            choices.append([objects[KINDS[before]]])
        elif param in objects:
            choices.append([objects[param]])
        else:
            values = VALUES.get((param, two_before)) or VALUES.get(param)
            assert values, f"{template}: add the values of {{{param}}} to VALUES"
            choices.append(values)
    return ["/" + "/".join(combo) for combo in itertools.product(*choices)]


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (volatile columns left out), to prove nothing changed."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in VOLATILE_COLUMNS]
            rows = session.execute(sa_select(*columns)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out
