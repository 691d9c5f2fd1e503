"""`canary dns check` reads the canary domain's records from a real DNS server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from canary.dns import Resolver
from canary.dnscheck import check_domain
from tests.support.dns_server import ANSWER_TIMEOUT, TestDnsServer


def publish_good_zone(dns: TestDnsServer) -> None:
    dns.add("canary.test", "MX", "10 mx.canarytrace.test")
    dns.txt("canary.test", "v=spf1 -all")
    dns.txt("_dmarc.canary.test", "v=DMARC1; p=reject")


async def test_a_correct_zone_passes(dns_server: TestDnsServer) -> None:
    publish_good_zone(dns_server)
    resolver = Resolver(dns_server.servers, timeout=ANSWER_TIMEOUT)
    report = await check_domain(resolver, "canary.test", "mx.canarytrace.test")
    assert report.ok, report
    assert report.zone_lines() == []


async def test_missing_and_wrong_records_are_reported_with_fixes(
    dns_server: TestDnsServer,
) -> None:
    dns_server.add("canary.test", "MX", "10 mail.elsewhere.test")
    dns_server.txt("canary.test", "v=spf1 include:_spf.esp.test ~all")
    resolver = Resolver(dns_server.servers, timeout=ANSWER_TIMEOUT)
    report = await check_domain(resolver, "canary.test", "mx.canarytrace.test")
    by_name = {c.name: c for c in report.checks}
    assert not report.ok
    assert by_name["mx"].found == ("10 mail.elsewhere.test",)
    assert not by_name["spf"].ok and not by_name["dmarc"].ok
    assert report.zone_lines() == [
        "canary.test. MX 10 mx.canarytrace.test.",
        'canary.test. TXT "v=spf1 -all"',
        '_dmarc.canary.test. TXT "v=DMARC1; p=reject; sp=reject; adkim=s; aspf=s"',
    ]


async def test_claimed_catchall_subdomains_need_an_mx_or_a_wildcard(
    dns_server: TestDnsServer,
) -> None:
    publish_good_zone(dns_server)
    dns_server.add("bob.canary.test", "MX", "10 mx.canarytrace.test")
    resolver = Resolver(dns_server.servers, timeout=ANSWER_TIMEOUT)
    claimed = ["alice.canary.test", "bob.canary.test", "carol.other.test"]
    report = await check_domain(resolver, "canary.test", "mx.canarytrace.test", claimed)
    by_name = {c.name: c for c in report.checks}
    assert "mx carol.other.test" not in by_name  # another domain's subdomain is not ours
    assert by_name["mx bob.canary.test"].ok
    alice = by_name["mx alice.canary.test"]
    assert not alice.ok and not report.ok
    assert "*.canary.test. MX 10 mx.canarytrace.test." in alice.advice
    assert report.zone_lines() == ["alice.canary.test. MX 10 mx.canarytrace.test."]

    dns_server.add("*.canary.test", "MX", "10 mx.canarytrace.test")
    fixed = await check_domain(
        Resolver(dns_server.servers, timeout=ANSWER_TIMEOUT),
        "canary.test",
        "mx.canarytrace.test",
        claimed,
    )
    assert fixed.ok, fixed
    assert {c.name: c.found for c in fixed.checks}["mx alice.canary.test"] == (
        "10 mx.canarytrace.test",
    )


async def test_a_silent_dns_server_is_a_failed_check_not_a_crash(
    dns_server: TestDnsServer,
) -> None:
    dns_server.mode = "silent"
    resolver = Resolver(dns_server.servers, timeout=0.5)
    report = await check_domain(resolver, "canary.test", None)
    assert not report.ok
    assert all("lookup failed" in c.advice for c in report.checks)


def test_cli_prints_records_and_exits_non_zero(dns_server: TestDnsServer, tmp_path: Path) -> None:
    dns_server.add("canary.test", "MX", "10 mx.canarytrace.test")
    host, port = dns_server.servers[0]
    env = {
        **os.environ,
        "CANARY_DATA_DIR": str(tmp_path),
        "CANARY_DNS_SERVERS": f"{host}:{port}",
        "CANARY_SMTP_HOSTNAME": "mx.canarytrace.test",
    }
    run = subprocess.run(
        [sys.executable, "-m", "canary", "dns", "check", "canary.test", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stderr
    data = json.loads(run.stdout)
    assert [c["ok"] for c in data["checks"]] == [True, False, False]
    publish_good_zone(dns_server)
    dns_server.remove("canary.test", "MX")
    dns_server.add("canary.test", "MX", "10 mx.canarytrace.test")
    ok = subprocess.run(
        [sys.executable, "-m", "canary", "dns", "check", "canary.test"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("ok ") == 3


def test_cli_checks_the_subdomains_users_claimed(dns_server: TestDnsServer, tmp_path: Path) -> None:
    publish_good_zone(dns_server)
    host, port = dns_server.servers[0]
    env = {
        **os.environ,
        "CANARY_DATA_DIR": str(tmp_path),
        "CANARY_DOMAINS": "canary.test",
        "CANARY_DNS_SERVERS": f"{host}:{port}",
        "CANARY_SMTP_HOSTNAME": "mx.canarytrace.test",
    }

    def canary(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "canary", *args], env=env, capture_output=True, text=True
        )

    claim = canary("catchall", "claim", "alice.canary.test")
    assert claim.returncode == 0, claim.stderr
    assert "canary dns check canary.test" in claim.stdout
    missing = canary("dns", "check", "canary.test")
    assert missing.returncode == 1
    assert "FAIL mx alice.canary.test" in missing.stdout
    assert "alice.canary.test. MX 10 mx.canarytrace.test." in missing.stdout
    dns_server.add("*.canary.test", "MX", "10 mx.canarytrace.test")
    fixed = canary("dns", "check", "canary.test", "--json")
    assert fixed.returncode == 0, fixed.stdout
    assert "mx alice.canary.test" in [c["check"] for c in json.loads(fixed.stdout)["checks"]]
