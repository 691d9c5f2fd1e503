"""Studies: a researcher's plan of sites, one or more synthetic personas per site, signup times.

A study plan is a CSV with a header row and the columns ``name``, ``url``, ``domains``
(separated by spaces, ``;`` or ``|``; taken from the URL's host when empty) and
``category``; an optional ``personas`` column overrides the per-site persona count.
Every problem is reported with its line number at once, and nothing is created unless
the whole plan is valid.

Personas of all sites are issued in one batch (:mod:`canary.personas`) so their names
keep the edit-distance rule across the whole study. Time-to-leak is measured from
``Identity.given_at`` (when the persona was used for the signup), recorded with
:func:`record_given`; without it, from the identity's creation.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import insert
from sqlmodel import Session, col, select

from canary import alias as aliases
from canary.errors import Conflict, InvalidInput, NotFound
from canary.issuance import append_records
from canary.models import AuthorisedSender, Identity, Source, Study, StudySite, User
from canary.orgs import registrable_domain
from canary.ownership import as_id
from canary.personas import PersonaBatch, PersonaSlot, issue_personas
from canary.sources import sender_domain, slugify

MAX_PERSONAS_PER_SITE = 100
_DOMAIN_SPLIT = re.compile(r"[\s;|,]+")
_CHUNK = 1000


@dataclass(frozen=True)
class PlanSite:
    """One valid line of a study plan."""

    line: int
    name: str
    url: str | None
    domains: tuple[str, ...]
    category: str = ""
    personas: int | None = None


@dataclass
class StudyImport:
    """The result of importing a plan: the study, its sources and the personas issued."""

    study: Study
    sources: list[Source] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)


def _line_error(line: int, message: str) -> str:
    return f"line {line}: {message}"


def parse_plan(text: str) -> list[PlanSite]:
    """Validate a study plan CSV; raises InvalidInput listing every bad line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise InvalidInput("the study plan is empty: it needs a header row (name,url,domains)")
    header = {h.strip().lower(): h for h in reader.fieldnames if h}
    if "name" not in header:
        raise InvalidInput("line 1: the header has no 'name' column (name,url,domains,category)")
    if "domains" not in header and "url" not in header:
        raise InvalidInput("line 1: the header needs a 'domains' or a 'url' column")
    errors: list[str] = []
    sites: list[PlanSite] = []
    slugs: dict[str, int] = {}

    def cell(row: dict[str, str | None], key: str) -> str:
        return (row.get(header[key]) or "").strip() if key in header else ""

    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank lines are harmless
        name = cell(row, "name")
        slug = slugify(name)
        if not slug:
            errors.append(_line_error(line, f"site name {name!r} needs a letter or digit"))
            continue
        if slug in slugs:
            errors.append(_line_error(line, f"site {name!r} repeats line {slugs[slug]}"))
            continue
        slugs[slug] = line
        url = cell(row, "url") or None
        host = None
        if url:
            parts = urlsplit(url if "//" in url else f"https://{url}")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                errors.append(_line_error(line, f"url {url!r} is not an http(s) address"))
                continue
            host = parts.hostname
        raw_domains = [d for d in _DOMAIN_SPLIT.split(cell(row, "domains")) if d]
        if not raw_domains and host:
            derived = registrable_domain(host)
            raw_domains = [derived] if derived else []
        if not raw_domains:
            errors.append(_line_error(line, f"site {name!r} has no domains and no usable url"))
            continue
        domains: list[str] = []
        for raw in raw_domains:
            try:
                domains.append(sender_domain(raw))
            except InvalidInput as exc:
                errors.append(_line_error(line, str(exc)))
        personas = None
        if cell(row, "personas"):
            try:
                personas = int(cell(row, "personas"))
            except ValueError:
                personas = -1
            if not 1 <= personas <= MAX_PERSONAS_PER_SITE:
                errors.append(_line_error(line, f"personas must be 1 to {MAX_PERSONAS_PER_SITE}"))
        sites.append(
            PlanSite(
                line, name, url, tuple(dict.fromkeys(domains)), cell(row, "category"), personas
            )
        )
    if errors:
        shown = errors[:50]
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise InvalidInput("invalid study plan:\n" + "\n".join(shown) + more)
    if not sites:
        raise InvalidInput("the study plan lists no sites")
    return sites


def import_study(
    session: Session,
    owner: User,
    name: str,
    sites: Sequence[PlanSite],
    *,
    domain: str,
    personas_per_site: int = 1,
    locale: str = "en_US",
    style: str = "token",
    auto_confirm: bool = False,
    seed: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> StudyImport:
    """Create the study, one source per site (own domains authorised) and its personas.

    ``progress(stage, done, total)`` reports the ``sources`` and ``personas`` stages.
    Raises Conflict when the study or a site's source already exists (naming the line).
    """
    slug = slugify(name)
    if not slug:
        raise InvalidInput(f"invalid study name {name!r}: it needs a letter or digit")
    if not 1 <= personas_per_site <= MAX_PERSONAS_PER_SITE:
        raise InvalidInput(f"personas per site must be 1 to {MAX_PERSONAS_PER_SITE}")
    if session.exec(select(Study).where(Study.owner_id == owner.id, Study.slug == slug)).first():
        raise Conflict(f"a study named {name!r} already exists")
    assert owner.id is not None
    existing = set(session.exec(select(Source.slug).where(Source.owner_id == owner.id)))
    clashes = [
        _line_error(s.line, f"a source named {s.name!r} already exists")
        for s in sites
        if slugify(s.name) in existing
    ]
    if clashes:
        raise Conflict("cannot import the study plan:\n" + "\n".join(clashes[:50]))

    study = Study(
        owner_id=owner.id, name=name.strip(), slug=slug, locale=locale, auto_confirm=auto_confirm
    )
    session.add(study)
    session.flush()
    result = StudyImport(study=study)
    # Bulk inserts: add_source's per-row checks cost ~4 round trips per site.
    for start in range(0, len(sites), _CHUNK):
        chunk = sites[start : start + _CHUNK]
        rows = [
            {
                "owner_id": owner.id,
                "name": s.name,
                "slug": slugify(s.name),
                "url": s.url,
                "notes": f"study {study.name}" + (f", {s.category}" if s.category else ""),
                "created_at": study.created_at,
            }
            for s in chunk
        ]
        inserted = {
            src.slug: src for src in session.scalars(insert(Source).returning(Source), rows)
        }
        sources = [inserted[slugify(s.name)] for s in chunk]
        session.execute(
            insert(AuthorisedSender),
            [
                {"source_id": src.id, "domain": d, "reason": "own", "added_at": study.created_at}
                for src, s in zip(sources, chunk, strict=True)
                for d in s.domains
            ],
        )
        session.execute(
            insert(StudySite),
            [
                {
                    "study_id": study.id,
                    "source_id": src.id,
                    "category": s.category[:100],
                    "plan_line": s.line,
                }
                for src, s in zip(sources, chunk, strict=True)
            ],
        )
        result.sources.extend(sources)
        if progress is not None:
            progress("sources", len(result.sources), len(sites))

    slots = [
        PersonaSlot(source)
        for source, site in zip(result.sources, sites, strict=True)
        for _ in range(site.personas or personas_per_site)
    ]
    batch = PersonaBatch(slots=slots, domain=domain, style=style, locale=locale, seed=seed)
    result.identities = issue_personas(
        session,
        owner,
        batch,
        progress=(lambda done: progress("personas", done, len(slots))) if progress else None,
    )
    return result


def get_study(session: Session, owner: User, name_or_id: str | int) -> Study:
    """One of the owner's studies by id, name or slug; raises NotFound."""
    study: Study | None = None
    if (row_id := as_id(name_or_id)) is not None:
        study = session.get(Study, row_id)
    if study is None or study.owner_id != owner.id:
        study = session.exec(
            select(Study).where(Study.owner_id == owner.id, Study.slug == slugify(str(name_or_id)))
        ).first()
    if study is None:
        raise NotFound(f"no study named {name_or_id!r}")
    return study


def list_studies(session: Session, owner: User) -> list[tuple[Study, int]]:
    """The owner's studies with their number of sites, by name."""
    from sqlmodel import func

    rows = session.exec(
        select(Study, func.count(col(StudySite.id)))
        .join(StudySite, col(StudySite.study_id) == col(Study.id), isouter=True)
        .where(Study.owner_id == owner.id)
        .group_by(col(Study.id))
        .order_by(Study.slug)
    )
    return [(study, count) for study, count in rows]


def study_sites(session: Session, study: Study) -> list[tuple[StudySite, Source]]:
    """The study's sites with their sources, in plan order."""
    rows = session.exec(
        select(StudySite, Source)
        .join(Source, col(Source.id) == col(StudySite.source_id))
        .where(StudySite.study_id == study.id)
        .order_by(col(StudySite.id))
    )
    return [(site, source) for site, source in rows]


def study_personas(
    session: Session, study: Study, limit: int | None = None
) -> list[tuple[Identity, Source, StudySite]]:
    """The study's personas with their site, in plan order (the list to sign up with)."""
    query = (
        select(Identity, Source, StudySite)
        .join(Source, col(Source.id) == col(Identity.source_id))
        .join(StudySite, col(StudySite.source_id) == col(Identity.source_id))
        .where(StudySite.study_id == study.id)
        .order_by(col(StudySite.id), col(Identity.id))
    )
    if limit is not None:
        query = query.limit(limit)
    return [(identity, source, site) for identity, source, site in session.exec(query)]


def set_auto_confirm(session: Session, study: Study, enabled: bool) -> Study:
    """Opt the study in to (or out of) fetching confirmation links once per persona."""
    study.auto_confirm = enabled
    session.add(study)
    session.flush()
    return study


# ---------------------------------------------------------------------- signup times


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time (``now`` allowed); naive values are taken as UTC."""
    raw = text.strip()
    if raw.lower() == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not an ISO 8601 time (e.g. 2025-03-14T09:30:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _lookup(session: Session, owner: User, refs: Iterable[str]) -> dict[str, Identity]:
    """Identities by id or alias (case and +tags ignored), only the owner's."""
    refs = list(dict.fromkeys(refs))
    numeric = {r for r in refs if as_id(r) is not None}
    # Ids are 32-bit integers: a larger number names nothing (and PostgreSQL refuses it).
    by_id: dict[object, str] = {int(r): r for r in numeric if int(r) < 2**31}
    by_alias: dict[object, str] = {
        aliases.normalise_address(r): r for r in refs if r not in numeric
    }
    found: dict[str, Identity] = {}
    for use_id, mapping in ((True, by_id), (False, by_alias)):
        column = Identity.id if use_id else Identity.alias
        values = list(mapping)
        for start in range(0, len(values), _CHUNK):
            query = select(Identity).where(
                col(column).in_(values[start : start + _CHUNK]), Identity.owner_id == owner.id
            )
            for identity in session.exec(query):
                found[mapping[identity.id if use_id else identity.alias]] = identity
    return found


def record_given(
    session: Session, owner: User, entries: Sequence[tuple[str, datetime]]
) -> list[Identity]:
    """Record when identities (id or alias) were used for a signup; raises NotFound listing
    the unknown ones. Each hand-over is appended to the issuance log as ``given``."""
    found = _lookup(session, owner, [ref for ref, _ in entries])
    missing = [ref for ref, _ in entries if ref not in found]
    if missing:
        raise NotFound("no identity " + ", ".join(repr(m) for m in missing[:20]))
    changed: list[Identity] = []
    for ref, at in entries:
        identity = found[ref]
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        identity.given_at = at
        session.add(identity)
        changed.append(identity)
    session.flush()
    sources = {
        s.id: s
        for s in session.exec(
            select(Source).where(col(Source.id).in_({i.source_id for i in changed}))
        )
    }
    for start in range(0, len(changed), _CHUNK):
        append_records(
            session, [(i, sources[i.source_id], "given") for i in changed[start : start + _CHUNK]]
        )
    return changed


def parse_given_csv(text: str) -> list[tuple[str, datetime]]:
    """Rows of ``identity,given_at`` (identity: id or alias); errors name the line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = {h.strip().lower(): h for h in (reader.fieldnames or []) if h}
    ident_col = header.get("identity") or header.get("alias") or header.get("id")
    time_col = header.get("given_at") or header.get("at")
    if ident_col is None or time_col is None:
        raise InvalidInput("line 1: the header needs 'identity' (id or alias) and 'given_at'")
    entries: list[tuple[str, datetime]] = []
    errors: list[str] = []
    for row in reader:
        ref, at = (row.get(ident_col) or "").strip(), (row.get(time_col) or "").strip()
        if not ref and not at:
            continue
        if not ref:
            errors.append(_line_error(reader.line_num, "no identity"))
            continue
        try:
            entries.append((ref, parse_time(at)))
        except InvalidInput as exc:
            errors.append(_line_error(reader.line_num, str(exc)))
    if errors:
        raise InvalidInput("invalid signup times:\n" + "\n".join(errors[:50]))
    return entries
