"""The JSON API for studies, signup times and seed batches (under ``/api/v1``).

Also the request parsing and file building the study and seed pages share, so a form
and a JSON body are checked by the same code. Every lookup goes through the owner-scoped
service functions in ``canary/``; errors are ``canary.errors`` classes, answered as JSON
by :mod:`dashboard.errors`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import (
    identity_json,
    int_param,
    json_body,
    json_response,
    path_id,
)
from faker.config import AVAILABLE_LOCALES
from sqlmodel import Session

from canary.config import Settings
from canary.confirm import attempts_for_study
from canary.errors import InvalidInput
from canary.identity import ALIAS_STYLES
from canary.models import Source, Study, User
from canary.report import Report, cdf_svg, graph_json, graphml, study_report
from canary.seeds import (
    DEFAULT_COLUMNS,
    DEFAULT_POSTAL_FORMAT,
    batch_identities,
    get_batch,
    list_batches,
    new_seed_batch,
    parse_columns,
    seed_csv,
    seed_row,
)
from canary.sources import authorised_domains
from canary.study import (
    MAX_PERSONAS_PER_SITE,
    get_study,
    import_study,
    list_studies,
    parse_given_csv,
    parse_plan,
    parse_time,
    record_given,
    set_auto_confirm,
    study_personas,
)

PREFIX = "/api/v1"
MAX_API_PERSONAS = 10_000  # larger studies belong to the CLI, which shows progress
MAX_API_SEEDS = 10_000
MAX_GIVEN = 10_000
DELIMITERS = {",": ",", ";": ";", "|": "|", "tab": "\t", "\t": "\t"}
PERSONA_COLUMNS = ("identity_id", "site", "url", "category", "name", "email", "given_at")
REPORT_FILES = {
    "report.json": "application/json",
    "graph.json": "application/json",
    "graph.graphml": "application/graphml+xml",
    "plot.svg": "image/svg+xml",
}


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def _string(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    return value.strip()


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _domains(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise InvalidInput(f"{name} must be a list of domain names")
    return value


# ---------------------------------------------------------------------- shared with pages


def study_json(study: Study, sites: int | None = None) -> dict[str, Any]:
    """The JSON form of a study."""
    data: dict[str, Any] = {
        "id": study.id,
        "name": study.name,
        "slug": study.slug,
        "locale": study.locale,
        "auto_confirm": study.auto_confirm,
        "created_at": study.created_at,
    }
    if sites is not None:
        data["sites"] = sites
    return data


def import_plan(
    session: Session, settings: Settings, user: User, body: dict[str, Any]
) -> dict[str, Any]:
    """Import a study from ``name``, ``plan`` (CSV text) and options; the API's answer."""
    name, plan = _string(body, "name"), _string(body, "plan")
    if not name or not plan:
        raise InvalidInput("a study needs a name and a plan (CSV: name,url,domains,category)")
    per_site = int_param(body.get("personas_per_site"), "personas_per_site", 1) or 0
    if not 1 <= per_site <= MAX_PERSONAS_PER_SITE:
        raise InvalidInput(f"personas_per_site must be 1 to {MAX_PERSONAS_PER_SITE}")
    style = _string(body, "style") or settings.identity_style
    if style not in ALIAS_STYLES:
        raise InvalidInput(f"style must be one of {', '.join(ALIAS_STYLES)}")
    domain = _string(body, "domain") or settings.default_domain or ""
    if domain not in settings.domains:
        raise InvalidInput(f"{domain!r} is not a canary domain of this service")
    locale = _string(body, "locale") or settings.faker_locale
    if locale not in AVAILABLE_LOCALES:
        raise InvalidInput(f"unknown locale {locale!r} (e.g. en_US, de_DE, fr_FR)")
    sites = parse_plan(plan)
    total = sum(s.personas or per_site for s in sites)
    if total > MAX_API_PERSONAS:
        raise InvalidInput(
            f"{total:,} personas: at most {MAX_API_PERSONAS:,} at once here; "
            "import larger studies with canary study import"
        )
    result = import_study(
        session, user, name, sites, domain=domain, personas_per_site=per_site,
        locale=locale, style=style, auto_confirm=_bool(body, "auto_confirm"),
    )  # fmt: skip
    return {
        "study": study_json(result.study, len(result.sources)),
        "sites": len(result.sources),
        "identities": len(result.identities),
    }


def persona_rows(session: Session, study: Study) -> list[dict[str, Any]]:
    """The personas to sign up with, one row per persona, in plan order."""
    return [
        {"identity_id": i.id, "site": src.name, "url": src.url or "", "category": site.category,
         "name": i.display_name, "email": i.alias, "given_at": i.given_at}
        for i, src, site in study_personas(session, study)
    ]  # fmt: skip


def personas_csv(session: Session, study: Study) -> bytes:
    """The personas as CSV (its identity and given_at columns read back as signup times)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=PERSONA_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in persona_rows(session, study):
        given = row["given_at"]
        writer.writerow({**row, "given_at": given.isoformat() if given else ""})
    return out.getvalue().encode("utf-8")


def report_file(study: Study, report: Report, name: str) -> tuple[bytes, str, str]:
    """(body, content type, download name) of one of :data:`REPORT_FILES`."""
    if name not in REPORT_FILES:
        raise web.HTTPNotFound()
    if name == "report.json":
        body = json.dumps(report.as_dict(), indent=2, ensure_ascii=False).encode()
    elif name == "graph.json":
        body = json.dumps(graph_json(report), indent=2, ensure_ascii=False).encode()
    elif name == "graph.graphml":
        body = graphml(report)
    else:
        body = cdf_svg(report).encode()
    stem, _, ext = name.partition(".")
    return body, REPORT_FILES[name], f"{study.slug}-{stem}.{ext}"


def seed_batch_request(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`canary.seeds.new_seed_batch` from a form or JSON body."""
    vendor = _string(body, "vendor")
    if not vendor:
        raise InvalidInput("vendor (the name of who receives the list) is required")
    count = int_param(body.get("count"), "count", 10) or 0
    if not 1 <= count <= MAX_API_SEEDS:
        raise InvalidInput(f"count must be between 1 and {MAX_API_SEEDS:,}")
    style = _string(body, "style") or settings.identity_style
    if style not in ALIAS_STYLES:
        raise InvalidInput(f"style must be one of {', '.join(ALIAS_STYLES)}")
    domain = _string(body, "domain") or settings.default_domain or ""
    if domain not in settings.domains:
        raise InvalidInput(f"{domain!r} is not a canary domain of this service")
    return {
        "vendor": vendor,
        "count": count,
        "domain": domain,
        "vendor_domains": _domains(body, "vendor_domains"),
        "company_domains": _domains(body, "company_domains"),
        "postal_format": _string(body, "postal_format") or DEFAULT_POSTAL_FORMAT,
        "label": _string(body, "label")[:200],
        "locale": settings.faker_locale,
        "style": style,
    }


def seed_layout(columns: str, delimiter: str = ",") -> tuple[list[tuple[str, str]], str]:
    """The parsed column layout and the delimiter (``,`` ``;`` ``|`` or ``tab``)."""
    if delimiter not in DELIMITERS:
        raise InvalidInput("delimiter must be one of , ; | tab")
    return parse_columns(columns), DELIMITERS[delimiter]


def batch_json(session: Session, batch: Any, vendor: Source, seeds: bool) -> dict[str, Any]:
    """The JSON form of a seed batch, with its seed records when ``seeds``."""
    data: dict[str, Any] = {
        "id": batch.id,
        "vendor": vendor.name,
        "vendor_id": vendor.id,
        "label": batch.label,
        "count": batch.count,
        "created_at": batch.created_at,
        "authorised_senders": authorised_domains(session, vendor),
    }
    if seeds:
        data["seeds"] = [
            seed_row(i, vendor.name, batch.id) for i in batch_identities(session, batch)
        ]
    return data


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
        return study_json(set_auto_confirm(session, study, _bool(body, "enabled")))

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
    at = parse_time(_string(body, "given_at") or "now")

    def work(session: Session) -> dict[str, Any]:
        (identity,) = record_given(session, user, [(str(identity_id), at)])
        return identity_json(identity, session.get(Source, identity.source_id))

    return json_response(await run(_store(request), work))


async def identities_given(request: web.Request) -> web.Response:
    user = current_user(request)
    if request.content_type == "text/csv":
        entries = parse_given_csv(await request.text())
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
            entries.append((ref.strip(), parse_time(_string(item, "given_at") or "now")))
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
