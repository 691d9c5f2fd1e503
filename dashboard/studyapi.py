"""The JSON API for studies, signup times and seed batches (under ``/api/v1``).

Request parsing shared with the pages is in :mod:`dashboard.studyforms`. Every lookup
goes through the owner-scoped service functions in ``canary/``, so another user's id is
not found; errors are ``canary.errors`` classes, answered as JSON by
:mod:`dashboard.errors`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import (
    identity_json,
    json_body,
    json_response,
    path_id,
)
from canary.dashboard.studyforms import (
    MAX_GIVEN,
    batch_json,
    bool_field,
    given_from_csv,
    import_plan,
    persona_rows,
    plain_text,
    report_file,
    seed_batch_request,
    seed_layout,
    signup_time,
    string_field,
    study_json,
)
from sqlmodel import Session

from canary.confirm import attempts_for_study
from canary.errors import InvalidInput
from canary.models import Source
from canary.report import study_report
from canary.seeds import (
    DEFAULT_COLUMNS,
    batch_identities,
    get_batch,
    list_batches,
    new_seed_batch,
    seed_csv,
)
from canary.study import (
    get_study,
    list_studies,
    record_given,
    set_auto_confirm,
)

PREFIX = "/api/v1"


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


# ---------------------------------------------------------------------- studies


async def list_studies_api(request: web.Request) -> web.Response:
    user = current_user(request)
    rows = await run(_store(request), lambda s: list_studies(s, user))
    return json_response({"items": [study_json(study, sites) for study, sites in rows]})


async def create_study(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await json_body(request)
    settings = request.app[keys.SETTINGS]
    data = await run(_store(request), lambda s: import_plan(s, settings, user, body))
    return json_response(data, status=201)


async def read_study(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        study = get_study(session, user, study_id)
        report = study_report(session, study)
        data = study_json(study, report.sites)
        data["identities"] = report.identities
        outcomes: dict[str, int] = {}
        for attempt in attempts_for_study(session, study):
            outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
        data["confirmations"] = outcomes
        return data

    return json_response(await run(_store(request), work))


async def study_auto_confirm(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)
    body = await json_body(request)

    def work(session: Session) -> dict[str, Any]:
        study = get_study(session, user, study_id)  # another user's study: 404 first
        if "enabled" not in body:
            raise InvalidInput("enabled (true or false) is required")
        return study_json(set_auto_confirm(session, study, bool_field(body, "enabled")))

    return json_response(await run(_store(request), work))


async def study_personas_api(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)
    rows = await run(_store(request), lambda s: persona_rows(s, get_study(s, user, study_id)))
    return json_response({"items": rows})


def _report_route(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        user = current_user(request)
        study_id = path_id(request)

        def work(session: Session) -> tuple[bytes, str, str]:
            study = get_study(session, user, study_id)
            return report_file(study, study_report(session, study), name)

        body, content_type, _ = await run(_store(request), work)
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    handler.__name__ = f"study_{name.replace('.', '_')}"
    return handler


# ---------------------------------------------------------------------- signup times


async def identity_given(request: web.Request) -> web.Response:
    user = current_user(request)
    identity_id = path_id(request)
    body = await json_body(request)
    at = signup_time(string_field(body, "given_at", "now", nonempty=True))

    def work(session: Session) -> dict[str, Any]:
        (identity,) = record_given(session, user, [(str(identity_id), at)])
        return identity_json(identity, session.get(Source, identity.source_id))

    return json_response(await run(_store(request), work))


async def identities_given(request: web.Request) -> web.Response:
    user = current_user(request)
    if request.content_type == "text/csv":
        try:
            text = (await request.read()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the CSV must be UTF-8 text") from None
        entries = given_from_csv(text)
    else:
        items = (await json_body(request)).get("items")
        if not isinstance(items, list) or not items:
            raise InvalidInput("items must be a list of {identity, given_at}")
        entries = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"items[{n}] must be an object")
            ref = item.get("identity")
            if isinstance(ref, int) and not isinstance(ref, bool):
                ref = str(ref)
            if not isinstance(ref, str) or not ref.strip():
                raise InvalidInput(f"items[{n}].identity must be an id or an alias")
            ref = plain_text(ref, f"items[{n}].identity").strip()
            entries.append((ref, signup_time(string_field(item, "given_at", "now", nonempty=True))))
    if not entries:
        raise InvalidInput("no signup times given")
    if len(entries) > MAX_GIVEN:
        raise InvalidInput(f"at most {MAX_GIVEN:,} signup times at once")
    count = await run(_store(request), lambda s: len(record_given(s, user, entries)))
    return json_response({"recorded": count})


# ---------------------------------------------------------------------- seeds


async def list_seed_batches(request: web.Request) -> web.Response:
    user = current_user(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [batch_json(session, b, v, seeds=False) for b, v in list_batches(session, user)]

    return json_response({"items": await run(_store(request), work)})


async def create_seed_batch(request: web.Request) -> web.Response:
    user = current_user(request)
    spec = seed_batch_request(request.app[keys.SETTINGS], await json_body(request))

    def work(session: Session) -> dict[str, Any]:
        result = new_seed_batch(session, user, **spec)
        return batch_json(session, result.batch, result.source, seeds=True)

    return json_response(await run(_store(request), work), status=201)


async def read_seed_batch(request: web.Request) -> web.Response:
    user = current_user(request)
    batch_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        batch = get_batch(session, user, batch_id)
        vendor = session.get(Source, batch.source_id)
        assert vendor is not None
        return batch_json(session, batch, vendor, seeds=True)

    return json_response(await run(_store(request), work))


async def seed_batch_csv(request: web.Request) -> web.Response:
    user = current_user(request)
    batch_id = path_id(request)
    layout, sep = seed_layout(
        request.query.get("columns") or DEFAULT_COLUMNS, request.query.get("delimiter") or ","
    )

    def work(session: Session) -> str:
        batch = get_batch(session, user, batch_id)
        vendor = session.get(Source, batch.source_id)
        assert vendor is not None
        return seed_csv(batch_identities(session, batch), layout, vendor.name, batch.id, sep)

    text = await run(_store(request), work)
    return web.Response(text=text, content_type="text/csv")


def add_routes(app: web.Application) -> None:
    """Register the study, signup-time and seed routes of the API."""
    p = PREFIX
    app.router.add_get(f"{p}/studies", list_studies_api)
    app.router.add_post(f"{p}/studies", create_study)
    app.router.add_get(f"{p}/studies/{{id}}", read_study)
    app.router.add_post(f"{p}/studies/{{id}}/auto-confirm", study_auto_confirm)
    app.router.add_get(f"{p}/studies/{{id}}/personas", study_personas_api)
    app.router.add_get(f"{p}/studies/{{id}}/report", _report_route("report.json"))
    app.router.add_get(f"{p}/studies/{{id}}/graph", _report_route("graph.json"))
    app.router.add_get(f"{p}/studies/{{id}}/graph.graphml", _report_route("graph.graphml"))
    app.router.add_post(f"{p}/identities/given", identities_given)
    app.router.add_post(f"{p}/identities/{{id}}/given", identity_given)
    app.router.add_get(f"{p}/seeds", list_seed_batches)
    app.router.add_post(f"{p}/seeds", create_seed_batch)
    app.router.add_get(f"{p}/seeds/{{id}}", read_seed_batch)
    app.router.add_get(f"{p}/seeds/{{id}}/csv", seed_batch_csv)
