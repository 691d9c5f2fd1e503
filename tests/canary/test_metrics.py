"""/metrics: Prometheus text scraped through the dashboard after real SMTP traffic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from canary import metrics
from canary.config import Settings
from canary.store import Store
from tests.support.dashboard import build_app, seed_user
from tests.support.smtp import message_bytes, send_message, smtp_server  # noqa: F401

TOKEN = "m" * 40


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_after_traffic(
    aiohttp_client: Any,
    settings: Settings,
    store: Store,
    smtp_server: Any,  # noqa: F811
) -> None:
    seed_user(store, "alice", admin=True)  # one analysed message with a shared finding
    reply = await send_message(
        smtp_server.host, smtp_server.port, "news@shop.test", ["someone@canary.test"],
        message_bytes("fresh"),
    )  # fmt: skip
    assert reply.code == 250
    before = _samples(metrics.render().decode()).get(("canary_analysis_seconds_count", ()), 0.0)
    metrics.observe("analysis_seconds", 0.3)

    client = await aiohttp_client(build_app(settings, store))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(await response.text())
    assert samples[("canary_messages", (("state", "queued"),))] == 1
    assert samples[("canary_messages", (("state", "analysed"),))] == 1
    assert samples[("canary_queue_depth", ())] == 1
    assert samples[("canary_findings", (("verdict", "shared"),))] == 1
    assert samples[("canary_incidents", (("kind", "shared"), ("status", "open")))] == 1
    assert samples[("canary_messages_raw_purged", ())] == 0
    assert samples[("canary_analysis_seconds_count", ())] == before + 1
    assert ("canary_smtp_messages_received_total", ()) in samples
    assert "set-cookie" not in {k.lower() for k in response.headers}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_metrics_access(
    aiohttp_client: Any, make_settings: Callable[..., Settings], store: Store
) -> None:
    local = await aiohttp_client(build_app(make_settings(), store))
    assert (await local.get("/metrics")).status == 200
    # Through a proxy the peer is not known to be local: refused without a token.
    proxied = await local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 401

    guarded = await aiohttp_client(build_app(make_settings(metrics_token=TOKEN), store))
    assert (await guarded.get("/metrics")).status == 401
    wrong = await guarded.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status == 401
    right = await guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200 and "canary_queue_depth" in await right.text()

    public = await aiohttp_client(build_app(make_settings(metrics_public=True), store))
    response = await public.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status == 200


def test_unknown_metric_names_are_refused() -> None:
    metrics.inc("verdicts_total", verdict="breach")
    with pytest.raises(KeyError, match="smtp_typo_total"):
        metrics.inc("smtp_typo_total")
    with pytest.raises(KeyError):
        metrics.observe("smtp_messages_received_total", 1.0)  # a counter, not a histogram
