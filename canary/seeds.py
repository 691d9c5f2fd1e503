"""Seed batches: a company's own canary records appended to the list it hands a vendor.

The vendor is a :class:`~canary.models.Source`. Its own domains and the company's
domains are authorised senders, so mail from either is ``expected``; anything else
reaching a seed becomes a finding (and an incident) on the vendor's source, which names
the vendor who received that batch.

Each seed has a tagged persona name, an alias, and a tagged postal line (``Suite 4K7M``)
whose 4-character code is unique among the owner's identities. Letters and phone calls
cannot be received by mail, so the code is stored in ``Identity.reference`` and the line
in ``Identity.postal_line``: ``canary trace "Suite 4K7M"`` (or the code alone, or the
name read off an envelope) finds the seed and its vendor.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlmodel import Session, col, select

from canary.errors import InvalidInput, NotFound
from canary.models import Identity, SeedBatch, SeedRecord, Source, User
from canary.personas import PersonaBatch, PersonaSlot, issue_personas
from canary.sources import add_source, authorise_sender, get_source

# No I, L, O, U, 0 or 1: a code read off a letter or over the phone is not misread.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 4
DEFAULT_POSTAL_FORMAT = "Suite {code}"
MAX_SEEDS = 100_000
FIELDS = (
    "name",
    "first_name",
    "middle",
    "last_name",
    "email",
    "postal_line",
    "code",
    "vendor",
    "batch",
)
DEFAULT_COLUMNS = "name,email,postal_line"


@dataclass
class SeedBatchResult:
    """A new batch, its vendor source and its seed identities (in order)."""

    batch: SeedBatch
    source: Source
    identities: list[Identity]


def _new_codes(session: Session, owner: User, count: int, postal_format: str) -> list[str]:
    """``count`` codes no identity of the owner uses yet (as reference or in a postal line)."""
    taken = {
        r.upper()
        for r in session.exec(
            select(Identity.reference).where(
                Identity.owner_id == owner.id, col(Identity.reference).is_not(None)
            )
        )
        if r
    }
    space = len(CODE_ALPHABET) ** CODE_LENGTH
    if len(taken) + count > space // 2:
        raise InvalidInput(f"too many seeds for {CODE_LENGTH}-character codes ({space:,} in all)")
    literal = postal_format.replace("{code}", " ").upper()
    rng = secrets.SystemRandom()
    codes: list[str] = []
    while len(codes) < count:
        code = "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        # A code that spells part of the line's fixed text ("DEPT") would match every line.
        if code in taken or code in literal:
            continue
        taken.add(code)
        codes.append(code)
    return codes


def new_seed_batch(
    session: Session,
    owner: User,
    vendor: str,
    count: int,
    *,
    domain: str,
    vendor_domains: Iterable[str] = (),
    company_domains: Iterable[str] = (),
    postal_format: str = DEFAULT_POSTAL_FORMAT,
    label: str = "",
    locale: str = "en_US",
    style: str = "token",
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedBatchResult:
    """Make ``count`` seed records for ``vendor`` (a source, created when missing).

    The vendor's domains (reason ``own``) and the company's (reason ``user``) are
    authorised for the vendor's source; earlier authorisations are kept.
    """
    if not 1 <= count <= MAX_SEEDS:
        raise InvalidInput(f"count must be between 1 and {MAX_SEEDS:,}")
    if "{code}" not in postal_format:
        raise InvalidInput("the postal format needs a {code} placeholder, e.g. 'Suite {code}'")
    vendor_domains, company_domains = list(vendor_domains), list(company_domains)
    try:
        source = get_source(session, owner, vendor)
        for d in vendor_domains:
            authorise_sender(session, source, d, reason="own")
    except NotFound:
        source = add_source(session, owner, vendor, vendor_domains, notes="seed vendor")
    for d in company_domains:
        authorise_sender(session, source, d, reason="user")
    codes = _new_codes(session, owner, count, postal_format)
    slots = [
        PersonaSlot(source, postal_line=postal_format.replace("{code}", code), reference=code)
        for code in codes
    ]
    batch_spec = PersonaBatch(slots=slots, domain=domain, style=style, locale=locale, seed=seed)
    identities = issue_personas(session, owner, batch_spec, progress=progress)
    assert owner.id is not None and source.id is not None
    batch = SeedBatch(owner_id=owner.id, source_id=source.id, label=label, count=count)
    session.add(batch)
    session.flush()
    session.execute(
        insert(SeedRecord), [{"batch_id": batch.id, "identity_id": i.id} for i in identities]
    )
    return SeedBatchResult(batch=batch, source=source, identities=identities)


def get_batch(session: Session, owner: User, batch_id: int) -> SeedBatch:
    """One of the owner's seed batches; raises NotFound."""
    batch = session.get(SeedBatch, batch_id)
    if batch is None or batch.owner_id != owner.id:
        raise NotFound(f"no seed batch {batch_id}")
    return batch


def list_batches(session: Session, owner: User) -> list[tuple[SeedBatch, Source]]:
    """The owner's seed batches with their vendors, newest first."""
    rows = session.exec(
        select(SeedBatch, Source)
        .join(Source, col(Source.id) == col(SeedBatch.source_id))
        .where(SeedBatch.owner_id == owner.id)
        .order_by(col(SeedBatch.id).desc())
    )
    return [(batch, source) for batch, source in rows]


def batch_identities(session: Session, batch: SeedBatch) -> list[Identity]:
    """The batch's seed identities in the order they were made."""
    return list(
        session.exec(
            select(Identity)
            .join(SeedRecord, col(SeedRecord.identity_id) == col(Identity.id))
            .where(SeedRecord.batch_id == batch.id)
            .order_by(col(SeedRecord.id))
        )
    )


# ---------------------------------------------------------------------- CSV layout


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """``name,email,Address 2=postal_line,Country=const:US`` -> [(header, field)].

    A bare field is its own header; ``HEADER=FIELD`` renames; ``const:TEXT`` is a fixed
    value (the company's street address, a country). Fields: see :data:`FIELDS`.
    """
    columns: list[tuple[str, str]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        header, _, fld = part.partition("=")
        header, fld = header.strip(), (fld.strip() if fld else header.strip())
        if not fld.startswith("const:") and fld not in FIELDS:
            raise InvalidInput(f"unknown column {fld!r}: use {', '.join(FIELDS)} or const:TEXT")
        columns.append((header, fld))
    if not columns:
        raise InvalidInput("no columns given")
    return columns


def _name_parts(display_name: str) -> tuple[str, str, str]:
    words = display_name.split()
    if len(words) < 2:
        return display_name, "", ""
    return words[0], " ".join(words[1:-1]), words[-1]


def seed_row(identity: Identity, vendor: str, batch_id: int | None) -> dict[str, str]:
    """Every field of one seed record, by field name."""
    first, middle, last = _name_parts(identity.display_name)
    return {
        "name": identity.display_name,
        "first_name": first,
        "middle": middle,
        "last_name": last,
        "email": identity.alias,
        "postal_line": identity.postal_line or "",
        "code": identity.reference or "",
        "vendor": vendor,
        "batch": "" if batch_id is None else str(batch_id),
    }


def seed_csv(
    identities: Sequence[Identity],
    columns: Sequence[tuple[str, str]],
    vendor: str,
    batch_id: int | None = None,
    delimiter: str = ",",
    header: bool = True,
) -> str:
    """The seed records as CSV in the chosen column layout."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if header:
        writer.writerow([h for h, _ in columns])
    for identity in identities:
        row = seed_row(identity, vendor, batch_id)
        writer.writerow([f[6:] if f.startswith("const:") else row[f] for _, f in columns])
    return out.getvalue()
