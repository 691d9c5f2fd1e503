"""``canary serve``: the composition root: mail server, analysis worker, dashboard, scheduler.

This is the only module in ``canary/`` that may import aiosmtpd (through
``canary.mailbox.server``) or aiohttp. It migrates the database, starts the intake, the
SMTP listener and the analysis worker in one asyncio loop, and stops them in reverse
order on SIGINT or SIGTERM.

With ``CANARY_SMTP_PROCESSES`` above one, receiving is spread over processes: once its
own listener is bound, ``serve`` starts that many minus one further ``canary serve
--smtp-only`` processes on the same address and port (``SO_REUSEPORT``: the kernel
hands each new connection to one of them). Each has its own intake, committing to the
shared database; analysis, dashboard and scheduler run in the first process only. The
first process stops the others when it stops.

``CANARY_HTTP_PROCESSES`` does the same for the dashboard and API: further ``canary
serve --http-only`` processes serve pages on the dashboard's port, so one slow page or
the mail traffic of the first process does not hold up every other request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from canary.cli.context import CliContext
from canary.config import Settings
from canary.errors import ConfigError
from canary.store import Store

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``canary serve``."""
    parser = subparsers.add_parser(
        "serve", help="run the SMTP server for the canary domains and the analysis worker"
    )
    parser.add_argument("--smtp-host", help="overrides CANARY_SMTP_HOST (default 127.0.0.1)")
    parser.add_argument("--smtp-port", help="overrides CANARY_SMTP_PORT (default 2525)")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="only receive and store; leave analysis to another process",
    )
    # Internal: one of the extra SMTP processes a serve with CANARY_SMTP_PROCESSES > 1
    # starts; receives and stores only, and stops on SIGTERM.
    parser.add_argument("--smtp-only", action="store_true", help=argparse.SUPPRESS)
    # Internal: likewise one of the extra dashboard processes (CANARY_HTTP_PROCESSES).
    parser.add_argument("--http-only", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=serve)

    worker = subparsers.add_parser(
        "worker",
        help="run only the analysis worker (more of them may share one PostgreSQL database)",
    )
    worker.add_argument("--once", action="store_true", help="analyse what is queued now, then exit")
    worker.set_defaults(handler=run_worker)


def _settings(ctx: CliContext) -> Settings:
    """The settings with the serve flags applied (parsed and checked like the variables)."""
    args = ctx.args
    if not (args.smtp_host or args.smtp_port):
        return ctx.settings
    return Settings.from_env(
        database_url=args.database_url,
        data_dir=args.data_dir,
        domains=args.domains,
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
    )


def serve(ctx: CliContext) -> int:
    """Run until SIGINT/SIGTERM."""
    settings = _settings(ctx)
    logging.getLogger().setLevel(logging.DEBUG if ctx.args.verbose else settings.log_level)
    if not ctx.args.verbose:
        # aiosmtpd logs every command at INFO ("mail.log"): a dozen lines per message.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if not settings.domains:
        raise ConfigError("CANARY_DOMAINS is not set: no canary domain to receive mail for")
    store = Store.from_settings(settings)
    try:
        if ctx.args.smtp_only:
            run_on_fastest_loop(run_smtp_only(settings, store))
            return 0
        if ctx.args.http_only:
            run_on_fastest_loop(run_http_only(settings, store))
            return 0
        store.upgrade()
        run_on_fastest_loop(run_services(settings, store, worker=not ctx.args.no_worker))
    finally:
        store.close()
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else None (asyncio's default loop).

    Receiving mail is mostly socket callbacks on the event loop; uvloop runs them in C,
    which leaves more of the one interpreter to the SMTP sessions and the intake.
    """
    try:
        import uvloop
    except ImportError:  # not built for every platform; asyncio's loop serves the same
        return None
    return uvloop.new_event_loop


def run_on_fastest_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion on the loop of :func:`event_loop_factory`."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _until_stopped(stop: asyncio.Event) -> None:
    """Wait for SIGTERM, or for the first process to go away (even killed outright)."""
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _ready(kind: str) -> None:
    sys.stdout.write(f"canary: {kind} process {os.getpid()} ready\n")
    sys.stdout.flush()


async def run_smtp_only(settings: Settings, store: Store) -> None:
    """An extra SMTP process: intake and listener on the shared port, until SIGTERM."""
    from canary.mailbox.intake import Intake
    from canary.mailbox.server import create_smtp_server

    stop = _stop_event()
    intake = Intake(store.engine)
    await intake.start()
    server = create_smtp_server(settings, intake)
    await server.start()
    _ready("SMTP")
    try:
        await _until_stopped(stop)
    finally:
        await server.stop()
        await intake.stop()


async def run_http_only(settings: Settings, store: Store) -> None:
    """An extra dashboard process on the shared HTTP port, until SIGTERM."""
    from canary.dashboard.app import start_dashboard

    from canary.assessment import reevaluate_after_correction

    stop = _stop_event()
    dashboard = await start_dashboard(
        settings, store, reuse_port=True, reevaluate=reevaluate_after_correction
    )
    _ready("HTTP")
    try:
        await _until_stopped(stop)
    finally:
        await dashboard.cleanup()


async def start_extra_processes(
    settings: Settings, store: Store, role: str, count: int, **env_overrides: str
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` extra ``canary serve --ROLE-only`` processes; wait until ready.

    They get the same settings through the environment, with ``env_overrides`` (the
    address actually bound, which matters when port 0 was asked for) and the resolved
    database URL.
    """
    env = dict(os.environ)
    env.update(
        CANARY_DATABASE_URL=store.url,
        CANARY_DOMAINS=",".join(settings.domains),
        **env_overrides,
    )
    if settings.data_dir is not None:
        env["CANARY_DATA_DIR"] = str(settings.data_dir)
    command = [sys.executable, "-m", "canary", "serve", f"--{role}-only"]
    children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(count)]
    for child in children:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        if b"ready" not in line:
            await stop_extra_processes(children)
            raise ConfigError(f"an extra {role} process did not start (exit {child.poll()})")
    return children


async def stop_extra_processes(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every extra process (they finish what is in flight) and reap it."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.to_thread(child.wait, 60)
        except subprocess.TimeoutExpired:
            child.kill()
            await asyncio.to_thread(child.wait)


def run_worker(ctx: CliContext) -> int:
    """Analyse queued messages until SIGINT/SIGTERM (or once, with --once)."""
    from canary.pipeline import Analyzer

    store = ctx.store  # migrated on first use
    analyzer = Analyzer(store, ctx.settings)
    if ctx.args.once:
        released = analyzer.release_dead_claims()
        count = analyzer.drain()
        print(f"analysed {count} message(s)" + (f", {released} taken over" if released else ""))
        return 0

    async def loop() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(signum, stop.set)
        await analyzer.run(stop)

    asyncio.run(loop())
    return 0


CAMPAIGN_INTERVAL_SECONDS = 300


async def campaign_job(store: Store) -> int:
    """Scheduled: find cross-source campaigns and re-decide the deliveries they touch."""
    from canary.alerts import alert_on_incident
    from canary.assessment import apply_campaigns

    def run() -> int:
        with store.session() as session:
            # A campaign can turn shared findings into a breach: that is news to alert.
            return apply_campaigns(session, on_incident=alert_on_incident)

    return await asyncio.to_thread(run)


async def run_services(settings: Settings, store: Store, *, worker: bool = True) -> None:
    """Start intake, SMTP server and worker; stop them in reverse order on a signal."""
    from apscheduler.triggers.interval import IntervalTrigger
    from canary.dashboard.app import start_dashboard
    from canary.mailbox.intake import Intake
    from canary.mailbox.server import create_smtp_server

    from canary.assessment import reevaluate_after_correction
    from canary.pipeline import Analyzer
    from canary.scheduler import build_scheduler

    stop = _stop_event()
    analyzer = Analyzer(store, settings) if worker else None
    intake = Intake(store.engine, on_commit=analyzer.wake if analyzer else None)
    await intake.start()
    server = create_smtp_server(settings, intake)
    await server.start()
    host, port = server.address
    children = await start_extra_processes(
        settings, store, "smtp", settings.smtp_processes - 1,
        CANARY_SMTP_HOST=host, CANARY_SMTP_PORT=str(port),
    )  # fmt: skip
    # A fixed, parseable line: scripts and tests started with port 0 read the port here.
    sys.stdout.write(f"canary: SMTP listening on {host}:{port}\n")
    sys.stdout.flush()
    try:
        dashboard = await start_dashboard(
            settings,
            store,
            reuse_port=settings.http_processes > 1,
            reevaluate=reevaluate_after_correction,
        )
        http_host, http_port = dashboard.addresses[0][:2]
        children += await start_extra_processes(
            settings, store, "http", settings.http_processes - 1,
            CANARY_HTTP_HOST=str(http_host), CANARY_HTTP_PORT=str(http_port),
        )  # fmt: skip
    except BaseException:
        await stop_extra_processes(children)
        raise
    sys.stdout.write(f"canary: dashboard on http://{http_host}:{http_port}/\n")
    sys.stdout.flush()
    scheduler = build_scheduler(settings, store)
    scheduler.add_job(
        campaign_job,
        IntervalTrigger(seconds=CAMPAIGN_INTERVAL_SECONDS),
        args=(store,),
        id="campaigns",
        name="cross-source campaign detection",
    )
    scheduler.start()
    worker_task = (
        # Analysis yields to ingest while mail is arriving (see Analyzer.run).
        asyncio.create_task(analyzer.run(stop, yield_to=intake.busy), name="analysis")
        if analyzer
        else None
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        # Reverse order of starting: scheduler, dashboard, worker, listener, then the
        # intake, which still commits what the last sessions handed over.
        stop.set()
        scheduler.shutdown(wait=False)
        await dashboard.cleanup()
        if worker_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
        await server.stop()
        await stop_extra_processes(children)
        await intake.stop()
