"""The OpenAPI description of the catch-all and source-tidying routes (see openapi.py).

:mod:`dashboard.openapi` merges :data:`CATCHALL_SCHEMAS` and :func:`catchall_paths`
into the one document, as it does for the study routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CLAIM = {
    "type": "object",
    "required": ["domain", "created_at"],
    "properties": {
        "domain": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

CATCHALL_SCHEMAS: dict[str, Any] = {
    "CatchAll": _CLAIM,
    "CatchAllList": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/CatchAll"}}
        },
    },
    "NewCatchAll": {
        "type": "object",
        "required": ["domain"],
        "properties": {
            "domain": {
                "type": "string",
                "description": "one new label under a canary domain, e.g. alice.canary.example",
            }
        },
    },
    "SourceName": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}},
    },
    "SourceMerge": {
        "type": "object",
        "required": ["into"],
        "properties": {"into": {"type": "integer", "description": "the source that remains"}},
    },
    "SenderDomain": {
        "type": "object",
        "required": ["domain"],
        "properties": {"domain": {"type": "string", "minLength": 1}},
    },
}


def catchall_paths(op: Callable[..., dict[str, Any]], id_param: dict[str, Any]) -> dict[str, Any]:
    """The paths, built with openapi.py's operation helper."""
    domain = {"name": "domain", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/catchall": {
            "get": op("List your catch-all subdomains", response="CatchAllList"),
            "post": op(
                "Claim a subdomain: any alias there is issued on its first message",
                body="NewCatchAll",
                status="201",
                response="CatchAll",
            ),
        },
        "/catchall/{domain}/release": {
            "post": op(
                "Stop issuing new aliases on a subdomain (issued ones stay)",
                [domain],
                response="CatchAll",
            )
        },
        "/sources/{id}/rename": {"post": op("Give a source a new name", [id_param], "SourceName")},
        "/sources/{id}/merge": {
            "post": op(
                "Fold this source into another: identities, mail, findings, senders",
                [id_param],
                "SourceMerge",
            )
        },
        "/sources/{id}/senders/remove": {
            "post": op("Stop authorising a sender domain", [id_param], "SenderDomain")
        },
    }
