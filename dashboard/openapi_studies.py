"""The OpenAPI description of the study, signup-time and seed routes (see openapi.py).

Kept apart from the core routes so each file stays readable; :mod:`dashboard.openapi`
merges :data:`STUDY_SCHEMAS` and :func:`study_paths` into the one document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faker.config import AVAILABLE_LOCALES

_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_DOMAINS = {"type": "array", "items": {"type": "string"}}
# Request schemas describe what the server accepts; where its rules do not fit a regular
# expression (unique site names in a plan, real dates), the pattern is a simpler subset
# and the description gives the full rule.
_NO_NUL = "[^\\u0000]*"
_NAME = {
    "type": "string",
    "maxLength": 200,
    "pattern": f"^{_NO_NUL}[A-Za-z0-9]{_NO_NUL}$",
    "description": "up to 200 characters with at least one letter or digit",
}
_DOMAIN = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
_DOMAIN_LIST = {
    "type": "array",
    "items": {"type": "string", "pattern": f"^({_DOMAIN}\\.)+[a-z]{{2,10}}$"},
}
_GIVEN_AT = {
    "type": "string",
    "description": "ISO 8601 date or date-time of the signup (naive: UTC), or now (default)",
    "pattern": "^(now|(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    "(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
    "(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?)$",
}
_PLAN = {
    "type": "string",
    "description": "CSV with a header row: name,url,domains,category and an optional "
    "personas column; domains separated by spaces, ';' or '|' (the url's host when empty); "
    "site names unique. The pattern shows the simplest plan, one site.",
    "pattern": f"^name,domains\\r?\\n[A-Za-z0-9][A-Za-z0-9 ]{{0,40}},{_DOMAIN}\\.test\\r?\\n?$",
}
_GIVEN_CSV = {
    "type": "string",
    "description": "CSV with identity (id or alias) and given_at columns, in any order; "
    "the pattern shows the simplest form, ids and dates.",
    "pattern": "^identity,given_at(\\r?\\n[1-9][0-9]{0,8},(now|20[0-9]{2}-(0[1-9]|1[0-2])-"
    "(0[1-9]|1[0-9]|2[0-8])))+\\r?\\n?$",
}
_COLUMNS_PATTERN = (
    "^ *((([^,=]*= *)?(name|first_name|middle|last_name|email|postal_line|code|vendor|batch)"
    "|[^,=]*= *const:[^,]*|const:[^,=]*) *)(, *(([^,=]*= *)?(name|first_name|middle|"
    "last_name|email|postal_line|code|vendor|batch)|[^,=]*= *const:[^,]*|const:[^,=]*) *)*$"
)

STUDY_SCHEMAS: dict[str, Any] = {
    "Study": {
        "type": "object",
        "required": ["id", "name", "slug", "locale", "auto_confirm", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "slug": {"type": "string"},
            "locale": {"type": "string"},
            "auto_confirm": {"type": "boolean"},
            "created_at": _TIME,
            "sites": {"type": "integer"},
            "identities": {"type": "integer"},
            "confirmations": {
                **_COUNTS,
                "description": "confirmation attempts by outcome (fetched, refused, error)",
            },
        },
    },
    "StudyList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Study"}}},
    },
    "NewStudy": {
        "type": "object",
        "required": ["name", "plan"],
        "properties": {
            "name": _NAME,
            "plan": _PLAN,
            "personas_per_site": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
            "locale": {"type": "string", "enum": sorted(AVAILABLE_LOCALES)},
            "style": {"type": "string", "enum": ["token", "words", "slug"]},
            "domain": {"type": "string", "description": "one of the service's canary domains"},
            "auto_confirm": {"type": "boolean", "default": False},
        },
    },
    "StudyImported": {
        "type": "object",
        "required": ["study", "sites", "identities"],
        "properties": {
            "study": {"$ref": "#/components/schemas/Study"},
            "sites": {"type": "integer"},
            "identities": {"type": "integer"},
        },
    },
    "AutoConfirm": {
        "type": "object",
        "required": ["enabled"],
        "properties": {"enabled": {"type": "boolean"}},
    },
    "Personas": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "identity_id": {"type": "integer"},
                        "site": {"type": "string"},
                        "url": {"type": "string"},
                        "category": {"type": "string"},
                        "name": {"type": "string"},
                        "email": {"type": "string"},
                        "given_at": _TIME_OR_NULL,
                    },
                },
            }
        },
    },
    "Report": {
        "type": "object",
        "description": "definitions of every figure are in the report's definitions",
        "required": [
            "study",
            "generated_at",
            "sites",
            "identities",
            "sites_with_mail",
            "share_with_mail",
            "sites_with_shared",
            "share_with_shared",
            "sites_with_breach",
            "share_with_breach",
            "third_parties_per_site",
            "third_party_histogram",
            "days_to_first_third_party",
            "cdf",
            "top_third_parties",
            "graph",
            "site_results",
            "definitions",
        ],  # fmt: skip
        "properties": {
            "study": {"type": "string"},
            "generated_at": _TIME,
            "sites": {"type": "integer"},
            "identities": {"type": "integer"},
            "sites_with_mail": {"type": "integer"},
            "share_with_mail": {"type": "number"},
            "sites_with_shared": {"type": "integer"},
            "share_with_shared": {"type": "number"},
            "sites_with_breach": {"type": "integer"},
            "share_with_breach": {"type": "number"},
            "third_parties_per_site": {
                "type": "object",
                "additionalProperties": {"type": "number"},
            },
            "third_party_histogram": _COUNTS,
            "days_to_first_third_party": {
                "type": "object",
                "additionalProperties": {"type": ["number", "null"]},
            },
            "cdf": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"days": {"type": "number"}, "share": {"type": "number"}},
                },
            },
            "top_third_parties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"org": {"type": "string"}, "sites": {"type": "integer"}},
                },
            },
            "graph": {"$ref": "#/components/schemas/Graph"},
            "site_results": {"type": "array", "items": {"type": "object"}},
            "definitions": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Graph": {
        "type": "object",
        "description": "node-link form (networkx node_link_graph)",
        "required": ["directed", "multigraph", "graph", "nodes", "links"],
        "properties": {
            "directed": {"type": "boolean"},
            "multigraph": {"type": "boolean"},
            "graph": {"type": "object"},
            "nodes": {"type": "array", "items": {"type": "object"}},
            "links": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Given": {
        "type": "object",
        "properties": {"given_at": _GIVEN_AT},
    },
    "GivenBulk": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10000,
                "items": {
                    "type": "object",
                    "required": ["identity"],
                    "properties": {
                        "identity": {
                            "type": ["string", "integer"],
                            "description": "id or alias",
                            "pattern": f"^{_NO_NUL}[^\\s\\u0000]{_NO_NUL}$",
                        },
                        "given_at": _GIVEN_AT,
                    },
                },
            }
        },
    },
    "Recorded": {
        "type": "object",
        "required": ["recorded"],
        "properties": {"recorded": {"type": "integer"}},
    },
    "NewSeedBatch": {
        "type": "object",
        "required": ["vendor"],
        "properties": {
            "vendor": {
                **_NAME,
                "pattern": f"^{_NO_NUL}[A-Za-z]{_NO_NUL}$",
                "description": "a source (id or name; created when new), with a letter",
            },
            "count": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10},
            "vendor_domains": _DOMAIN_LIST,
            "company_domains": _DOMAIN_LIST,
            "postal_format": {
                "type": "string",
                "default": "Suite {code}",
                "pattern": f"^{_NO_NUL}\\{{code\\}}{_NO_NUL}$",
                "description": "the tagged postal line; {code} becomes the seed's code",
            },
            "label": {"type": "string", "pattern": f"^{_NO_NUL}$"},
            "style": {"type": "string", "enum": ["token", "words", "slug"]},
            "domain": {"type": "string", "description": "one of the service's canary domains"},
        },
    },
    "SeedBatch": {
        "type": "object",
        "required": ["id", "vendor", "vendor_id", "label", "count", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "vendor": {"type": "string"},
            "vendor_id": {"type": "integer"},
            "label": {"type": "string"},
            "count": {"type": "integer"},
            "created_at": _TIME,
            "authorised_senders": _DOMAINS,
            "seeds": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
    "SeedBatchList": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/SeedBatch"}}
        },
    },
}


def study_paths(
    op: Callable[..., dict[str, Any]],
    q: Callable[..., dict[str, Any]],
    id_param: dict[str, Any],
) -> dict[str, Any]:
    """The paths, built with openapi.py's operation and parameter helpers."""
    columns = q(
        "columns",
        "column layout, e.g. 'Full name=name,E-mail=email,Country=const:DE'",
        pattern=_COLUMNS_PATTERN,
    )
    delimiter = q("delimiter", "CSV delimiter", enum=[",", ";", "|", "tab"])

    return {
        "/studies": {
            "get": op("List studies", response="StudyList"),
            "post": op(
                "Import a study plan: sources and personas",
                body="NewStudy",
                status="201",
                response="StudyImported",
            ),
        },
        "/studies/{id}": {
            "get": op(
                "Read a study with counts of confirmation attempts", [id_param], response="Study"
            )
        },
        "/studies/{id}/auto-confirm": {
            "post": op(
                "Opt the study in to or out of automatic confirmation",
                [id_param],
                "AutoConfirm",
                response="Study",
            )
        },
        "/studies/{id}/personas": {
            "get": op("The study's personas to sign up with", [id_param], response="Personas")
        },
        "/studies/{id}/report": {
            "get": op("The measurement report", [id_param], response="Report")
        },
        "/studies/{id}/graph": {
            "get": op(
                "The site-to-third-party graph as node-link JSON", [id_param], response="Graph"
            )
        },
        "/studies/{id}/graph.graphml": {
            "get": op("The graph as GraphML", [id_param], media="application/graphml+xml")
        },
        "/identities/given": {
            "post": op(
                "Record signup times of many identities (JSON, or CSV identity,given_at)",
                body_media={
                    "application/json": {"schema": {"$ref": "#/components/schemas/GivenBulk"}},
                    "text/csv": {"schema": _GIVEN_CSV},
                },
                response="Recorded",
            )
        },
        "/identities/{id}/given": {
            "post": op("Record when an identity was used for a signup", [id_param], "Given")
        },
        "/seeds": {
            "get": op("List seed batches", response="SeedBatchList"),
            "post": op(
                "Make a seed batch for a vendor",
                body="NewSeedBatch",
                status="201",
                response="SeedBatch",
            ),
        },
        "/seeds/{id}": {
            "get": op("Read a seed batch and its seeds", [id_param], response="SeedBatch")
        },
        "/seeds/{id}/csv": {
            "get": op(
                "The batch's seeds as CSV in a column layout",
                [id_param, columns, delimiter],
                media="text/csv",
            )
        },
    }
