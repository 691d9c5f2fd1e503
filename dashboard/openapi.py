"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Kept as data next to the routes; a test checks that every API route is described and
every described path is routed, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.openapi_catchall import CATCHALL_SCHEMAS, catchall_paths
from canary.dashboard.openapi_studies import STUDY_SCHEMAS, study_paths

from canary.models import INCIDENT_STATUSES, VERDICTS

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _q(name: str, description: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        # An empty value counts as absent (HTML forms send empty fields).
        "allowEmptyValue": True,
        "schema": {"type": kind, **extra},
    }


_PAGE = [
    _q("before", "keyset pagination: only rows with a smaller id (next_before)", "integer"),
    _q("limit", "page size, at most 200", "integer", default=50),
]

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
    },
    "Page": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "next_before": {"type": ["integer", "null"]},
        },
    },
    "NewSource": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "domains": {"type": "array", "items": {"type": "string"}},
            "url": {"type": "string"},
            "notes": {"type": "string"},
        },
    },
    "NewSender": {
        "type": "object",
        "required": ["domain"],
        "properties": {
            "domain": {"type": "string"},
            "reason": {"type": "string", "enum": ["own", "provider", "acquirer", "user"]},
        },
    },
    "NewIdentity": {
        "type": "object",
        "description": "source_id of an existing source, or source: a name (created if new)",
        "properties": {
            "source_id": {"type": "integer"},
            "source": {"type": "string"},
            "style": {"type": "string", "enum": ["token", "words", "slug"]},
            "domain": {"type": "string"},
            "real_name": {"type": "string"},
        },
    },
    "BulkIdentities": {
        "allOf": [
            {"$ref": "#/components/schemas/NewIdentity"},
            {
                "type": "object",
                "required": ["count"],
                "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 10000}},
            },
        ]
    },
    "Trace": {"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}},
}

_SCHEMAS.update(STUDY_SCHEMAS)
_SCHEMAS.update(CATCHALL_SCHEMAS)


def _op(
    summary: str,
    params: list[Any] | None = None,
    body: str | None = None,
    *,
    status: str = "200",
    response: str | None = None,
    media: str = "application/json",
    body_media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation: its success status and body (a schema name), and the error body."""
    content: dict[str, Any] = {}
    if response:
        content["schema"] = {"$ref": f"#/components/schemas/{response}"}
    elif media != "application/json":
        content["schema"] = {"type": "string"}
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            status: {"description": "OK", "content": {media: content}},
            "default": {
                "description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if body or body_media:
        op["requestBody"] = {
            "required": True,
            "content": body_media
            or {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return op


PATHS: dict[str, dict[str, Any]] = {
    "/sources": {
        "get": _op("List sources with status (clean, shared, breach) and senders"),
        "post": _op("Create a source", body="NewSource", status="201"),
    },
    "/sources/{id}": {"get": _op("Read a source with the organisations that wrote", [_ID])},
    "/sources/{id}/senders": {
        "post": _op("Authorise a sender domain for a source", [_ID], "NewSender", status="201")
    },
    "/identities": {
        "get": _op("List identities", [_q("source_id", "only this source", "integer"), *_PAGE]),
        "post": _op("Create one identity", body="NewIdentity", status="201"),
    },
    "/identities/bulk": {
        "post": _op("Create many identities", body="BulkIdentities", status="201")
    },
    "/identities/{id}": {"get": _op("Read an identity", [_ID])},
    "/identities/{id}/retire": {"post": _op("Retire an identity", [_ID])},
    "/messages": {
        "get": _op(
            "Search messages, newest first",
            [
                _q("source_id", "delivered to this source", "integer"),
                _q("verdict", "a delivery has this verdict", enum=list(VERDICTS)),
                _q("sender_org", "sender organisation (registrable domain)"),
                _q("since", "received at or after (ISO 8601)"),
                _q("until", "received before (ISO 8601)"),
                _q("message_id", "the Message-ID header, with or without <>"),
                _q("recipient", "a recipient address"),
                *_PAGE,
            ],
        )
    },
    "/messages/{id}": {"get": _op("Read a message with deliveries, findings, evidence", [_ID])},
    "/messages/{id}/raw": {"get": _op("Download the raw message", [_ID], media="message/rfc822")},
    "/findings": {
        "get": _op(
            "List current findings",
            [
                _q("source_id", "only this source", "integer"),
                _q("verdict", "only this verdict", enum=list(VERDICTS)),
                *_PAGE,
            ],
        )
    },
    "/incidents": {
        "get": _op(
            "List incidents",
            [
                _q("source_id", "only this source", "integer"),
                _q("status", "only this status", enum=list(INCIDENT_STATUSES)),
                *_PAGE,
            ],
        )
    },
    "/incidents/{id}/confirm": {"post": _op("Confirm an incident", [_ID])},
    "/incidents/{id}/dismiss": {"post": _op("Dismiss an incident", [_ID])},
    "/incidents/{id}/reopen": {"post": _op("Reopen an incident", [_ID])},
    "/trace": {
        "get": _op("Which source got this name, address or code?", [_q("q", "the text")]),
        "post": _op("Trace (text in the body)", body="Trace"),
    },
}

PATHS.update(study_paths(_op, _q, _ID))
PATHS.update(catchall_paths(_op, _ID))


def _with_domains(schemas: dict[str, Any], domains: tuple[str, ...]) -> dict[str, Any]:
    """The schemas with ``domain`` fields limited to this service's canary domains."""
    schemas = copy.deepcopy(schemas)
    for name in ("NewIdentity", "NewStudy", "NewSeedBatch"):
        field = schemas.get(name, {}).get("properties", {}).get("domain")
        if field is not None:
            field["enum"] = list(domains)
    return schemas


def document(domains: tuple[str, ...] = ()) -> dict[str, Any]:
    """The OpenAPI document; ``domains`` (the service's canary domains) become enums."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canarytrace API",
            "version": "1",
            "description": "Sources, identities, messages, findings, incidents, trace, "
            "studies (reports, graphs, signup times) and seed batches. "
            'Errors are {"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": _with_domains(_SCHEMAS, domains) if domains else _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """Serve the OpenAPI document (public: it describes, it reveals no data)."""
    return web.json_response(document(request.app[keys.SETTINGS].domains))
