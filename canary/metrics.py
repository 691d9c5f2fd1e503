"""Prometheus metrics: in-process counters and histograms, plus figures read from the database.

Two kinds of numbers, both rendered in the Prometheus text format by :func:`render`:

* **in-process** counters and histograms that code increments as things happen
  (``metrics.inc("smtp_messages_received_total")``,
  ``metrics.observe("analysis_seconds", 0.12)``). They count what *this process* did
  since it started, as Prometheus expects of counters; a process that has not done a
  thing shows 0. Names are declared once in :data:`DECLARED` (an unknown name raises,
  so a typo cannot silently make a new metric);
* **database** gauges computed at scrape time (:func:`database_snapshot`): queue depth
  by message state, findings by verdict, incidents by kind and status, alerts and
  forwards by state, purged messages. They are the same from every process sharing the
  database, so several mailbox and worker processes can be scraped through any one
  dashboard.

Every metric is exposed with the ``canary_`` prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from canary.models import Alert, Finding, Forward, Incident, Message

NAMESPACE = "canary"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUEUE_STATES = ("queued", "retry", "analysing")

# name -> (kind, help, label names). Counters are declared with their ``_total`` name.
DECLARED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "smtp_messages_received_total": ("counter", "Messages accepted with 250 after DATA.", ()),
    "smtp_recipients_rejected_total": (
        "counter",
        "RCPT TO refused (not a canary domain, too many recipients).",
        ("reason",),
    ),
    "smtp_messages_rejected_total": (
        "counter",
        "Messages refused at DATA (too large, store unavailable).",
        ("reason",),
    ),
    "messages_analysed_total": ("counter", "Messages analysed by this process.", ("state",)),
    "verdicts_total": ("counter", "Findings recorded by this process, by verdict.", ("verdict",)),
    "alerts_sent_total": ("counter", "Alerts delivered, by channel kind.", ("kind",)),
    "alerts_failed_total": ("counter", "Alert delivery attempts that failed.", ("kind",)),
    "forwards_sent_total": ("counter", "Messages forwarded to owners' addresses.", ()),
    "forwards_failed_total": ("counter", "Forward attempts that failed.", ()),
    "messages_purged_total": ("counter", "Raw messages purged by retention.", ()),
    "analysis_seconds": ("histogram", "Time to analyse one message, in seconds.", ()),
}
# The *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Registry:
    """This process's counters and histograms (thread-safe, as prometheus_client is)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Histogram] = {}
        self._lock = threading.Lock()
        for name, (kind, help_text, labels) in DECLARED.items():
            full = f"{NAMESPACE}_{name}"
            if kind == "counter":
                # prometheus_client appends _total itself.
                metric: Counter | Histogram = Counter(
                    full.removesuffix("_total"), help_text, labels, registry=self.registry
                )
            else:
                metric = Histogram(
                    full, help_text, labels, registry=self.registry, buckets=_BUCKETS
                )
            self._metrics[name] = metric

    def _get(self, name: str, kind: str, labels: dict[str, str]) -> Counter | Histogram:
        declared = DECLARED.get(name)
        if declared is None or declared[0] != kind:
            raise KeyError(f"no {kind} named {name!r} is declared in canary.metrics.DECLARED")
        metric = self._metrics[name]
        return metric.labels(**labels) if declared[2] else metric

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to a declared counter."""
        self._get(name, "counter", labels).inc(amount)  # type: ignore[union-attr]

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation of a declared histogram."""
        self._get(name, "histogram", labels).observe(value)  # type: ignore[union-attr]


REGISTRY = Registry()


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    """Add to a counter of this process, e.g. ``inc("verdicts_total", verdict="shared")``."""
    REGISTRY.inc(name, amount, **labels)


def observe(name: str, value: float, **labels: str) -> None:
    """Record a histogram observation, e.g. ``observe("analysis_seconds", 0.2)``."""
    REGISTRY.observe(name, value, **labels)


# ---------------------------------------------------------------------- database gauges


def _counts(session: Session, *columns: object, where: object = None) -> list[tuple]:
    statement = select(*columns, func.count()).group_by(*columns)  # type: ignore[call-overload]
    if where is not None:
        statement = statement.where(where)
    return [tuple(row) for row in session.exec(statement)]


def database_snapshot(session: Session) -> list[GaugeMetricFamily]:
    """Gauges read from the database now (a handful of GROUP BY queries on indexed columns)."""
    families: list[GaugeMetricFamily] = []

    def family(name: str, help_text: str, labels: list[str], rows: Iterable[tuple]) -> None:
        gauge = GaugeMetricFamily(f"{NAMESPACE}_{name}", help_text, labels=labels)
        for *values, count in rows:
            gauge.add_metric([str(v) for v in values], float(count))
        families.append(gauge)

    by_state = dict(_counts(session, Message.state))
    family(
        "messages",
        "Messages stored, by state.",
        ["state"],
        sorted((state, count) for state, count in by_state.items()),
    )
    depth = sum(by_state.get(state, 0) for state in QUEUE_STATES)
    families.append(
        GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth", "Messages waiting for or in analysis.", value=depth
        )
    )
    family(
        "findings",
        "Current (not superseded) findings, by verdict.",
        ["verdict"],
        sorted(_counts(session, Finding.verdict, where=col(Finding.superseded_at).is_(None))),
    )
    family(
        "incidents",
        "Incidents by kind and status.",
        ["kind", "status"],
        sorted(_counts(session, Incident.kind, Incident.status)),
    )
    family("alerts", "Alerts by delivery state.", ["state"], sorted(_counts(session, Alert.state)))
    family(
        "forwards",
        "Forwards by delivery state.",
        ["state"],
        sorted(_counts(session, Forward.state)),
    )
    purged = session.exec(select(func.count()).where(col(Message.raw_purged_at).is_not(None))).one()
    families.append(
        GaugeMetricFamily(
            f"{NAMESPACE}_messages_raw_purged",
            "Messages whose raw bytes retention has purged.",
            value=float(purged),
        )
    )
    return families


class _Snapshot(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


def render(database: list[GaugeMetricFamily] | None = None) -> bytes:
    """The Prometheus text exposition: this process's metrics, then the database gauges."""
    text = generate_latest(REGISTRY.registry)
    if database:
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Snapshot(database))
        text += generate_latest(snapshot)
    return text
