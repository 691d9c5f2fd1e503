"""Request parsing and downloads shared by the study and seed pages and the API.

A form and a JSON body are checked by the same code here, so the dashboard and the API
refuse the same things with the same messages; the files a page offers for download are
the bytes the API serves.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from canary.dashboard.serialize import int_param
from faker.config import AVAILABLE_LOCALES
from sqlmodel import Session

from canary.config import Settings
from canary.errors import InvalidInput
from canary.identity import ALIAS_STYLES
from canary.models import Source, Study, User
from canary.report import Report, cdf_svg, graph_json, graphml
from canary.seeds import (
    DEFAULT_POSTAL_FORMAT,
    batch_identities,
    parse_columns,
    seed_row,
)
from canary.sources import authorised_domains
from canary.study import (
    MAX_PERSONAS_PER_SITE,
    import_study,
    parse_given_csv,
    parse_plan,
    parse_time,
    study_personas,
)

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


MAX_NAME = 200  # the length of names the database keeps (studies, sources, labels)


def plain_text(value: str, name: str) -> str:
    """``value`` unless it holds a NUL character, which no text column can store."""
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL character")
    return value


def string_field(
    body: dict[str, Any], name: str, default: str = "", *, nonempty: bool = False
) -> str:
    """A text field, stripped, or ``default`` when absent; InvalidInput for null or
    non-text, and for empty text when ``nonempty`` (a choice left out is absent, not "")."""
    if name not in body:
        return default
    value = body[name]
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    text = plain_text(value, name).strip()
    if nonempty and not text:
        raise InvalidInput(f"{name} is empty: leave it out for the default")
    return text


def int_field(body: dict[str, Any], name: str, default: int) -> int:
    """A whole number (JSON number or digits in a form), or ``default`` when absent."""
    if name not in body:
        return default
    value = body[name]
    if value is None or value == "":
        raise InvalidInput(f"{name} must be a whole number")
    return int_param(value, name) or 0


def signup_time(text: str) -> datetime:
    """A signup time (ISO 8601 or ``now``) that every database can store, in UTC."""
    return _storable(parse_time(plain_text(text, "given_at") or "now"))


def _storable(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the end of time in UTC
        raise InvalidInput(f"{moment.isoformat()} is out of range") from None


def given_from_csv(text: str) -> list[tuple[str, datetime]]:
    """Signup times from CSV text (``identity,given_at``), each one storable."""
    entries = parse_given_csv(plain_text(text, "the CSV"))
    return [(ref, _storable(at)) for ref, at in entries]


def bool_field(body: dict[str, Any], name: str) -> bool:
    """A JSON boolean field (false when missing); InvalidInput for anything else."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def domains_field(body: dict[str, Any], name: str) -> list[str]:
    """A list of domain names (checked later by the service); empty when missing."""
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise InvalidInput(f"{name} must be a list of domain names")
    for domain in value:
        plain_text(domain, name)
    return value


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


def style_and_domain(settings: Settings, body: dict[str, Any]) -> tuple[str, str]:
    """The alias style and canary domain asked for, or this service's defaults."""
    style = string_field(body, "style", settings.identity_style, nonempty=True)
    if style not in ALIAS_STYLES:
        raise InvalidInput(f"style must be one of {', '.join(ALIAS_STYLES)}")
    domain = string_field(body, "domain", settings.default_domain or "", nonempty=True)
    if domain not in settings.domains:
        raise InvalidInput(f"{domain!r} is not a canary domain of this service")
    return style, domain


def import_plan(
    session: Session, settings: Settings, user: User, body: dict[str, Any]
) -> dict[str, Any]:
    """Import a study from ``name``, ``plan`` (CSV text) and options; the API's answer."""
    name, plan = string_field(body, "name"), string_field(body, "plan")
    if not name or not plan:
        raise InvalidInput("a study needs a name and a plan (CSV: name,url,domains,category)")
    per_site = int_field(body, "personas_per_site", 1)
    if not 1 <= per_site <= MAX_PERSONAS_PER_SITE:
        raise InvalidInput(f"personas_per_site must be 1 to {MAX_PERSONAS_PER_SITE}")
    style, domain = style_and_domain(settings, body)
    locale = string_field(body, "locale", settings.faker_locale, nonempty=True)
    if locale not in AVAILABLE_LOCALES:
        raise InvalidInput(f"unknown locale {locale!r} (e.g. en_US, de_DE, fr_FR)")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"the study name is longer than {MAX_NAME} characters")
    sites = parse_plan(plan)
    too_long = [f"line {s.line}" for s in sites if len(s.name) > MAX_NAME]
    if too_long:
        raise InvalidInput(f"site names longer than {MAX_NAME} characters: {', '.join(too_long)}")
    total = sum(s.personas or per_site for s in sites)
    if total > MAX_API_PERSONAS:
        raise InvalidInput(
            f"{total:,} personas: at most {MAX_API_PERSONAS:,} at once here; "
            "import larger studies with canary study import"
        )
    result = import_study(
        session, user, name, sites, domain=domain, personas_per_site=per_site,
        locale=locale, style=style, auto_confirm=bool_field(body, "auto_confirm"),
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
    vendor = string_field(body, "vendor")
    if not vendor or len(vendor) > MAX_NAME:
        raise InvalidInput(
            f"vendor (who receives the list, up to {MAX_NAME} characters) is required"
        )
    count = int_field(body, "count", 10)
    if not 1 <= count <= MAX_API_SEEDS:
        raise InvalidInput(f"count must be between 1 and {MAX_API_SEEDS:,}")
    style, domain = style_and_domain(settings, body)
    return {
        "vendor": vendor,
        "count": count,
        "domain": domain,
        "vendor_domains": domains_field(body, "vendor_domains"),
        "company_domains": domains_field(body, "company_domains"),
        "postal_format": string_field(body, "postal_format", DEFAULT_POSTAL_FORMAT, nonempty=True),
        "label": string_field(body, "label")[:200],
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
