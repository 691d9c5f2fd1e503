"""schemathesis against the served OpenAPI document of a real, started dashboard.

The dashboard listens on 127.0.0.1 with Alice's data; schemathesis reads
``/api/v1/openapi.json`` from it over HTTP and sends every described operation valid
and invalid requests with Alice's bearer token. Every response must pass all of
schemathesis's checks: no 5xx, a documented status and content type, the documented
error body, no answer without the token, and invalid input refused with a 4xx. One
check is left out: ``positive_data_acceptance``, which expects every request the JSON
Schema allows to succeed, while the API rightly refuses some of them for reasons a
schema does not state (a source name with no letter or digit, an unknown source id).

Counts of bulk operations are capped for the run (the document allows up to 10,000,
which would spend the run issuing identities); everything else is the served document
as it is, so operations added to it later are fuzzed too.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.browser import LiveDashboard
from tests.support.dashboard import Seeded

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation and generation mode
BULK_CAP = 20


def capped(document: dict[str, Any]) -> dict[str, Any]:
    """The document with large ``count``-like maxima lowered to :data:`BULK_CAP`."""
    out = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("maximum"), int) and node["maximum"] > BULK_CAP:
                node["maximum"] = BULK_CAP
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


def fuzz(base: str, token: str) -> tuple[Counter[str], list[str]]:
    """Run every operation in both generation modes; (statuses seen, failures)."""
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    # Unknown query parameters are ignored, as HTTP APIs do (cache busters, tracking);
    # only the described ones are mutated.
    config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
    schema = schemathesis.openapi.from_dict(capped(document), config=config)
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    operations = 0
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):

                @hypothesis.settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: schemathesis.Case) -> None:
                    response = case.call(base_url=f"{base}/api/v1", headers=headers, session=http)
                    statuses[f"{response.status_code // 100}xx"] += 1
                    try:
                        case.validate_response(
                            response, headers=headers, excluded_checks=[positive_data_acceptance]
                        )
                    except (Exception, BaseExceptionGroup) as exc:  # reported together
                        failures.append(f"{case.method} {case.formatted_path}: {exc}")

                check()
    assert operations >= 19
    return statuses, failures


async def test_api_conforms_to_its_openapi_document(
    live_dashboard: LiveDashboard, alice: Seeded
) -> None:
    # The dashboard runs on this event loop; the blocking client runs in a thread.
    statuses, failures = await asyncio.to_thread(fuzz, live_dashboard.url, alice.token)
    print(f"schemathesis responses by class: {dict(statuses)}")
    assert failures == [], "\n\n".join(failures)
    assert statuses["5xx"] == 0
    assert statuses["2xx"] > 0 and statuses["4xx"] > 0
