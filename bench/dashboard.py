"""Benchmark: dashboard and API latency on a large database, under concurrent clients.

    python bench/generate.py --database-url URL          # once: 1M messages
    python bench/dashboard.py --database-url URL [--clients 20] [--requests 200]
                              [--processes 2]

Starts the real dashboard (the application factory behind ``canary serve``) in a
child process on a free port of 127.0.0.1, logs in as the user bench/generate.py made,
and sends ``--requests`` requests to each page from ``--clients`` concurrent aiohttp
clients: the overview, a source page, the message list without and with each filter
(source, verdict, sender organisation, date range, recipient, Message-ID), a message
page, and trace by name, address and reference, each as a page and, where there is
one, as its API call. Prints p50 and p95 per page next to the reference (``/healthz``,
which touches no data, under the same load) and the 150 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_P95 = 0.150
PASSWORD = "bench-password"


def serve(url: str, port: int, data_dir: str, shared: bool) -> None:
    """Child process: the dashboard alone, as ``canary serve`` starts it.

    With ``shared`` it binds with ``SO_REUSEPORT`` beside the other dashboard processes
    (``CANARY_HTTP_PROCESSES``); they share ``data_dir`` and so the cookie key.
    """
    from canary.dashboard.app import start_dashboard

    from canary.cli.serve import run_on_fastest_loop
    from canary.config import Settings
    from canary.store import Store

    async def main() -> None:
        settings = Settings(
            database_url=url, data_dir=Path(data_dir), domains=("canary.test",),
            http_host="127.0.0.1", http_port=port,
        )  # fmt: skip
        store = Store.from_settings(settings)
        runner = await start_dashboard(settings, store, reuse_port=shared)
        print(f"dashboard listening on 127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        store.close()

    run_on_fastest_loop(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(url: str) -> dict[str, str]:
    """Real values to ask for: a leaking source, a message, a name, alias and reference."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:

        def one(sql: str) -> str:
            return str(conn.execute(text(sql)).scalar_one())

        out = {
            "source_id": one(
                "SELECT source_id FROM incident WHERE kind = 'breach' ORDER BY id LIMIT 1"
            ),
            "message_id": one("SELECT max(id) - 1000 FROM message"),
            "sender_org": one("SELECT sender_org FROM message ORDER BY id DESC LIMIT 1"),
            "header_message_id": one(
                "SELECT header_message_id FROM message WHERE id = (SELECT max(id) / 2 FROM message)"
            ),
            "recipient": one(
                "SELECT recipient FROM delivery WHERE id = (SELECT max(id) / 3 FROM delivery)"
            ),
            "name": one("SELECT display_name FROM identity ORDER BY id DESC LIMIT 1"),
            "alias": one(
                "SELECT alias FROM identity WHERE id = (SELECT max(id) / 2 FROM identity)"
            ),
            "reference": one("SELECT reference FROM identity ORDER BY id LIMIT 1"),
        }
    engine.dispose()
    return out


def pages(s: dict[str, str]) -> list[tuple[str, str]]:
    """(label, path) of everything measured."""
    q = {k: v.replace("@", "%40").replace("<", "%3C").replace(">", "%3E").replace(" ", "+")
         for k, v in s.items()}  # fmt: skip
    out = [
        ("overview", "/"),
        ("source page", f"/sources/{s['source_id']}"),
        ("message page", f"/messages/{s['message_id']}"),
        ("trace by name", f"/trace?q={q['name']}"),
        ("trace by address", f"/trace?q={q['alias']}"),
        ("trace by reference", f"/trace?q={q['reference']}"),
        ("API trace by name", f"/api/v1/trace?q={q['name']}"),
        ("API message", f"/api/v1/messages/{s['message_id']}"),
    ]
    filters = [
        ("no filter", ""),
        ("source", f"source_id={s['source_id']}"),
        ("verdict shared", "verdict=shared"),
        ("verdict breach", "verdict=breach"),
        ("verdict after_retirement", "verdict=after_retirement"),
        ("sender org", f"sender_org={q['sender_org']}"),
        ("date range", "since=2020-01-01&until=2020-02-01"),
        ("recipient", f"recipient={q['recipient']}"),
        ("Message-ID", f"message_id={q['header_message_id']}"),
        ("source + verdict", f"source_id={s['source_id']}&verdict=breach"),
    ]
    for label, query in filters:
        out.append((f"messages, {label}", f"/messages?{query}"))
        out.append((f"API messages, {label}", f"/api/v1/messages?{query}"))
    return out


async def measure(
    base: str, token: str | None, targets: list[tuple[str, str]], clients: int, requests: int
) -> list[tuple[str, list[float]]]:
    """Latencies of each target, ``requests`` of them from ``clients`` concurrent clients."""
    import aiohttp

    # unsafe=True: keep cookies of an IP address host (127.0.0.1).
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        form = await (await session.get("/login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', form)
        if match is None:
            raise SystemExit("no login form")
        response = await session.post(
            "/login",
            data={"csrf": match.group(1), "name": "bench", "password": PASSWORD, "next": "/"},
            allow_redirects=False,
        )
        if response.status != 303:
            raise SystemExit(f"login failed: {response.status}")
        api_headers = {"Authorization": f"Bearer {token}"} if token else {}
        results = []
        for label, path in [("reference: /healthz", "/healthz"), *targets]:
            headers = api_headers if path.startswith("/api/") else {}
            latencies: list[float] = []
            left = [requests]
            await asyncio.gather(
                *(_client(session, path, headers, left, latencies) for _ in range(clients))
            )
            results.append((label, latencies))
            p50, p95 = _percentiles(latencies)
            print(f"  {label:<38} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms", flush=True)
        return results


async def _client(
    session: object, path: str, headers: dict[str, str], left: list[int], latencies: list[float]
) -> None:
    """One client: request ``path`` until the shared budget ``left`` is spent."""
    while left[0] > 0:
        left[0] -= 1
        start = time.perf_counter()
        async with session.get(path, headers=headers) as reply:  # type: ignore[attr-defined]
            await reply.read()
            if reply.status != 200:
                raise SystemExit(f"{path}: HTTP {reply.status}")
        latencies.append(time.perf_counter() - start)


def _percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a database filled by bench/generate.py")
    parser.add_argument("--token-file", help="the API token bench/generate.py wrote")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument("--only", help="measure only pages whose label contains this")
    parser.add_argument(
        "--processes", type=int, default=1, help="dashboard processes (CANARY_HTTP_PROCESSES)"
    )
    parser.add_argument("--serve-only", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_only:
        url, port, data_dir = args.serve_only
        serve(url, int(port), data_dir, args.processes > 1)
        return
    if not args.database_url:
        raise SystemExit("--database-url is required (fill one with bench/generate.py)")
    from sqlalchemy import create_engine, text

    engine = create_engine(args.database_url)
    with engine.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in ("message", "identity", "source")
        }
    engine.dispose()
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    targets = [t for t in pages(sample(args.database_url)) if not args.only or args.only in t[0]]
    if not token:
        targets = [t for t in targets if not t[1].startswith("/api/")]
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="canary-dash-")
    command = [
        sys.executable, __file__, "--serve-only", args.database_url, str(port), data_dir,
        "--processes", str(args.processes),
    ]  # fmt: skip
    processes = []
    for _ in range(args.processes):
        process = subprocess.Popen(command, stdout=subprocess.PIPE)
        processes.append(process)
        assert process.stdout is not None
        if b"listening" not in process.stdout.readline():
            for started in processes:
                started.kill()
            raise SystemExit("the dashboard did not start")
    print(
        f"{counts['message']} messages, {counts['identity']} identities, {counts['source']} "
        f"sources; {args.clients} concurrent clients, {args.requests} requests per page, "
        f"{args.processes} dashboard process(es)",
        flush=True,
    )
    try:
        results = asyncio.run(
            measure(f"http://127.0.0.1:{port}", token, targets, args.clients, args.requests)
        )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    _, reference = _percentiles(results[0][1])
    slow = [(label, _percentiles(v)[1]) for label, v in results[1:]]
    over = [label for label, p95 in slow if p95 > TARGET_P95]
    worst = max(slow, key=lambda x: x[1])
    print(
        f"reference /healthz p95 {reference * 1000:.1f} ms; slowest: {worst[0]} p95 "
        f"{worst[1] * 1000:.1f} ms ({worst[1] / TARGET_P95:.2f} of the 150 ms target); "
        f"{len(over)} of {len(slow)} pages over the target"
        + (f": {', '.join(over)}" if over else "")
    )


if __name__ == "__main__":
    main()
