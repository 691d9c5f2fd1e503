"""Pages for researchers (studies and their reports) and companies (seed batches).

The measurement figures come from :func:`canary.report.study_report`, the pictures from
:mod:`canary.graph_picture` and :func:`canary.report.cdf_svg`, all rendered on the
server as inline SVG: these pages run no script of their own and nothing from mail.
Studies and batches are looked up through the owner-scoped service functions, so
another user's id is simply not found (404).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import int_param, path_id
from canary.dashboard.studyforms import (
    given_from_csv,
    import_plan,
    personas_csv,
    plain_text,
    report_file,
    seed_batch_request,
    seed_layout,
    signup_time,
)
from canary.dashboard.templating import render
from markupsafe import Markup
from sqlmodel import Session, col, select

from canary.confirm import attempts_for_study
from canary.errors import CanaryError, InvalidInput
from canary.graph_picture import caption, graph_svg
from canary.models import Identity, Source
from canary.report import CDF_MARKS, cdf_svg, share_within, study_report
from canary.seeds import (
    DEFAULT_COLUMNS,
    DEFAULT_POSTAL_FORMAT,
    FIELDS,
    batch_identities,
    get_batch,
    list_batches,
    new_seed_batch,
    seed_csv,
    seed_row,
)
from canary.sources import authorised_domains
from canary.study import (
    get_study,
    list_studies,
    record_given,
    set_auto_confirm,
    study_sites,
)

SITE_ROWS = 500  # the site table on the page; the JSON report has every site
ATTEMPT_ROWS = 200


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _upload(form: Any, name: str) -> str:
    """An uploaded file's text (UTF-8, BOM ignored), or '' when none was chosen."""
    field = form.get(name)
    if field is None or isinstance(field, str) or not getattr(field, "filename", ""):
        return ""
    try:
        return field.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{field.filename} is not UTF-8 text") from None


# ---------------------------------------------------------------------- studies


async def studies_page(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.Response:
    user = current_user(request)
    studies = await run(_store(request), lambda s: list_studies(s, user))
    settings = request.app[keys.SETTINGS]
    context = {"studies": studies, "error": error, "locale": settings.faker_locale}
    return render(request, "studies.html", context, status)


async def study_import(request: web.Request) -> web.Response:
    user = current_user(request)
    settings = request.app[keys.SETTINGS]
    form = await request.post()
    try:
        plan = _upload(form, "plan_file") or _text(form, "plan_text")
        options: dict[str, Any] = {
            "name": _text(form, "name"),
            "plan": plan,
            "personas_per_site": _text(form, "personas") or 1,
            "auto_confirm": _text(form, "auto_confirm") == "on",
        }
        if _text(form, "locale"):
            options["locale"] = _text(form, "locale")
        result = await run(_store(request), lambda s: import_plan(s, settings, user, options))
    except CanaryError as exc:
        return await studies_page(request, str(exc), 400)
    raise web.HTTPSeeOther(f"/studies/{result['study']['id']}?imported={result['identities']}")


def _attempt_rows(session: Session, study: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    attempts = attempts_for_study(session, study)
    counts: dict[str, int] = {}
    for a in attempts:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    shown = attempts[-ATTEMPT_ROWS:]
    ids = {a.identity_id for a in shown}
    who = {
        i.id: (i.alias, src.name)
        for i, src in session.exec(
            select(Identity, Source)
            .join(Source, col(Source.id) == col(Identity.source_id))
            .where(col(Identity.id).in_(ids))
        )
    }
    rows = [
        {"attempt": a, "alias": who.get(a.identity_id, ("?", "?"))[0],
         "site": who.get(a.identity_id, ("?", "?"))[1]}
        for a in reversed(shown)
    ]  # fmt: skip
    return rows, counts


async def study_page(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        study = get_study(session, user, study_id)
        report = study_report(session, study)
        attempts, attempt_counts = _attempt_rows(session, study)
        return {"study": study, "report": report, "attempts": attempts,
                "attempt_counts": attempt_counts}  # fmt: skip

    data = await run(_store(request), work)
    report = data["report"]
    data.update(
        r=report.summary(),
        graph=Markup(graph_svg(report)),
        graph_caption=caption(report),
        plot=Markup(cdf_svg(report)),
        marks=[(d, share_within(report, d)) for d in CDF_MARKS],
        site_rows=report.site_results[:SITE_ROWS],
        error=error,
        recorded=int_param(request.query.get("recorded"), "recorded"),
        imported=int_param(request.query.get("imported"), "imported"),
    )
    return render(request, "study.html", data, status)


async def study_auto_confirm(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)
    enabled = _text(await request.post(), "enabled") == "on"
    await run(_store(request), lambda s: set_auto_confirm(s, get_study(s, user, study_id), enabled))
    raise web.HTTPSeeOther(f"/studies/{study_id}#confirmation")


def _record_for_study(
    session: Session, user: Any, study_id: int, entries: list[tuple[str, Any]]
) -> int:
    """Record signup times, refusing (and rolling back) identities of other studies."""
    study = get_study(session, user, study_id)
    site_ids = {site.source_id for site, _ in study_sites(session, study)}
    changed = record_given(session, user, entries)
    foreign = [i.alias for i in changed if i.source_id not in site_ids]
    if foreign:
        raise InvalidInput(f"not a persona of {study.name}: " + ", ".join(foreign[:10]))
    return len(changed)


async def study_given(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)
    form = await request.post()
    try:
        csv_text = _upload(form, "csv_file")
        if csv_text:
            entries = given_from_csv(csv_text)
        else:
            identity = _text(form, "identity")
            if not identity:
                raise InvalidInput("give a persona (id or alias) and the time of the signup")
            entries = [(plain_text(identity, "persona"), signup_time(_text(form, "given_at")))]
        if not entries:
            raise InvalidInput("the CSV lists no signup times")
        count = await run(_store(request), lambda s: _record_for_study(s, user, study_id, entries))
    except CanaryError as exc:  # another user's study is still a 404 (study_page raises)
        return await study_page(request, error=str(exc), status=400)
    raise web.HTTPSeeOther(f"/studies/{study_id}?recorded={count}#signups")


async def study_download(request: web.Request) -> web.Response:
    user = current_user(request)
    study_id = path_id(request)
    name = request.match_info["file"]

    def work(session: Session) -> tuple[bytes, str, str]:
        study = get_study(session, user, study_id)
        if name == "personas.csv":
            return personas_csv(session, study), "text/csv", f"{study.slug}-personas.csv"
        return report_file(study, study_report(session, study), name)

    body, content_type, filename = await run(_store(request), work)
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------------- seeds


async def seeds_page(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.Response:
    user = current_user(request)
    batches = await run(_store(request), lambda s: list_batches(s, user))
    context = {
        "batches": batches,
        "error": error,
        "fields": FIELDS,
        "default_columns": DEFAULT_COLUMNS,
        "default_postal": DEFAULT_POSTAL_FORMAT,
    }
    return render(request, "seeds.html", context, status)


async def seed_create(request: web.Request) -> web.Response:
    user = current_user(request)
    settings = request.app[keys.SETTINGS]
    form = await request.post()
    columns = _text(form, "columns") or DEFAULT_COLUMNS
    try:
        spec = seed_batch_request(
            settings,
            {
                "vendor": _text(form, "vendor"),
                "count": _text(form, "count") or 10,
                "vendor_domains": _text(form, "vendor_domains").replace(",", " ").split(),
                "company_domains": _text(form, "company_domains").replace(",", " ").split(),
                "postal_format": _text(form, "postal_format") or DEFAULT_POSTAL_FORMAT,
                "label": _text(form, "label"),
            },
        )
        seed_layout(columns)  # a bad layout is refused before any seed is made
        batch_id = await run(_store(request), lambda s: new_seed_batch(s, user, **spec).batch.id)
    except CanaryError as exc:
        return await seeds_page(request, str(exc), 400)
    raise web.HTTPSeeOther(f"/seeds/{batch_id}?columns={_quote(columns)}")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


async def seed_batch_page(request: web.Request) -> web.Response:
    user = current_user(request)
    batch_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        batch = get_batch(session, user, batch_id)
        vendor = session.get(Source, batch.source_id)
        assert vendor is not None
        identities = batch_identities(session, batch)
        return {
            "batch": batch,
            "vendor": vendor,
            "senders": authorised_domains(session, vendor),
            "seeds": [seed_row(i, vendor.name, batch.id) for i in identities[:50]],
        }

    data = await run(_store(request), work)
    data["columns"] = request.query.get("columns") or DEFAULT_COLUMNS
    data["fields"] = FIELDS
    return render(request, "seed_batch.html", data)


async def seed_batch_csv(request: web.Request) -> web.Response:
    user = current_user(request)
    batch_id = path_id(request)
    columns = request.query.get("columns") or DEFAULT_COLUMNS
    delimiter = request.query.get("delimiter") or ","

    def work(session: Session) -> tuple[str, str]:
        batch = get_batch(session, user, batch_id)
        vendor = session.get(Source, batch.source_id)
        assert vendor is not None
        layout, sep = seed_layout(columns, delimiter)
        text = seed_csv(batch_identities(session, batch), layout, vendor.name, batch.id, sep)
        return text, f"seeds-{batch.id}-{vendor.slug}.csv"

    text, filename = await run(_store(request), work)
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def add_routes(app: web.Application) -> None:
    """Register the study and seed pages."""
    app.router.add_get("/studies", studies_page)
    app.router.add_post("/studies", study_import)
    app.router.add_get("/studies/{id}", study_page)
    app.router.add_post("/studies/{id}/auto-confirm", study_auto_confirm)
    app.router.add_post("/studies/{id}/given", study_given)
    app.router.add_get("/studies/{id}/files/{file}", study_download)
    app.router.add_get("/seeds", seeds_page)
    app.router.add_post("/seeds", seed_create)
    app.router.add_get("/seeds/{id}", seed_batch_page)
    app.router.add_get("/seeds/{id}/seeds.csv", seed_batch_csv)
