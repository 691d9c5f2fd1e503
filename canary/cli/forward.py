"""``canary forward add|verify|rule|list`` and ``canary alert add|list|test``."""

from __future__ import annotations

import argparse
import asyncio

from canary import alerts, forward_addresses, forwarding, mailer
from canary.cli.context import CliContext, CommandFailed, add_json_flag, add_user_flag
from canary.models import Identity, Source


def cmd_add(ctx: CliContext) -> None:
    settings = ctx.settings
    mailer.require_relay(settings)
    with ctx.store.session() as session:
        owner = ctx.user(session)
        record, token = forward_addresses.request_verification(
            session, settings, owner, ctx.args.address
        )
        address, address_id = record.address, record.id
    assert address_id is not None
    # The token is only ever in the mail: printing it would let anyone verify any address.
    try:
        asyncio.run(forward_addresses.send_verification(settings, owner, address, token))
    except mailer.RelayError as exc:
        with ctx.store.session() as session:
            forward_addresses.verification_not_sent(session, address_id)
        raise CommandFailed(f"verification mail not sent: {exc}") from None
    ctx.emit(
        {"address": address, "verification_sent": True},
        lambda: print(
            f"verification mail sent to {address}: open its link, or run "
            "`canary forward verify TOKEN` with the token from the link"
        ),
    )


def cmd_verify(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        record = forward_addresses.verify(session, ctx.args.token.rsplit("/", 1)[-1])
        address = record.address
    ctx.emit({"address": address, "verified": True}, lambda: print(f"{address} is verified"))


def cmd_rule(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        rule = forward_addresses.set_rule(
            session, owner, ctx.args.target, ctx.args.address, drop_breach=ctx.args.drop_breach
        )
        address = forward_addresses.get_address(session, owner, rule.address_id)
        data = {
            "id": rule.id,
            "target": ctx.args.target,
            "address": address.address,
            "drop_breach": rule.drop_breach,
            "verified": address.verified_at is not None,
        }

    def human() -> None:
        print(f"mail of {data['target']} goes to {data['address']} (rule {data['id']})")
        if not data["verified"]:
            print("note: the address is not verified yet; nothing is forwarded until it is")

    ctx.emit(data, human)


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        assert owner.id is not None
        addresses = forward_addresses.list_addresses(session, owner)
        by_id = {a.id: a.address for a in addresses}
        rules = []
        for rule in forward_addresses.list_rules(session, owner):
            if rule.identity_id is not None:
                identity = session.get(Identity, rule.identity_id)
                target = identity.alias if identity else str(rule.identity_id)
            else:
                source = session.get(Source, rule.source_id)
                target = source.name if source else str(rule.source_id)
            rules.append({"id": rule.id, "target": target, "address": by_id.get(rule.address_id),
                          "drop_breach": rule.drop_breach})  # fmt: skip
        forwards = [
            {"id": f.id, "delivery_id": f.delivery_id, "address": a, "verdict": f.verdict,
             "state": f.state, "attempts": f.attempts, "last_error": f.last_error,
             "sent_at": f.sent_at}
            for f, a in forwarding.forward_log(session, owner.id, 20)
        ]  # fmt: skip
        data = {
            "addresses": [
                {"id": a.id, "address": a.address, "verified_at": a.verified_at} for a in addresses
            ],
            "rules": rules,
            "forwards": forwards,
        }

    def human() -> None:
        for a in data["addresses"]:
            state = "verified" if a["verified_at"] else "not verified"
            print(f"address {a['id']:>4}  {a['address']:<40} {state}")
        for r in data["rules"]:
            drop = "  (breach dropped)" if r["drop_breach"] else ""
            print(f"rule    {r['id']:>4}  {r['target']:<40} -> {r['address']}{drop}")
        for f in data["forwards"]:
            error = f"  {f['last_error']}" if f["last_error"] else ""
            print(
                f"forward {f['id']:>4}  {f['verdict']:<16} {f['state']:<8} x{f['attempts']}{error}"
            )
        if not data["addresses"]:
            print("no address yet: `canary forward add you@example.org`")

    ctx.emit(data, human)


def cmd_alert_add(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        channel = alerts.add_channel(
            session, owner, ctx.args.kind, ctx.args.target, digest=ctx.args.digest,
            immediate=not ctx.args.digest_only, include_subjects=ctx.args.include_subjects,
        )  # fmt: skip
        data = {"id": channel.id, "kind": channel.kind, "target": channel.target,
                "digest": channel.digest, "secret": channel.secret}  # fmt: skip

    def human() -> None:
        print(f"alert channel {data['id']} added: {data['kind']} {data['target']}")
        if data["secret"]:
            print(f"signing secret (shown once): {data['secret']}")

    ctx.emit(data, human)


def cmd_alert_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        data = {
            "channels": [
                {"id": c.id, "kind": c.kind, "target": c.target, "enabled": c.enabled,
                 "immediate": c.immediate, "digest": c.digest}
                for c in alerts.list_channels(session, owner)
            ],
            "log": [
                {"id": a.id, "channel_id": a.channel_id, "event": a.event, "state": a.state,
                 "attempts": a.attempts, "last_error": a.last_error, "sent_at": a.sent_at}
                for a in alerts.delivery_log(session, owner, 20)
            ],
        }  # fmt: skip

    def human() -> None:
        for c in data["channels"]:
            state = "on" if c["enabled"] else "off"
            target = f"{c['kind']:<8} {c['target']:<40}"
            print(f"channel {c['id']:>4}  {target} {state} digest={c['digest']}")
        for a in data["log"]:
            error = f"  {a['last_error']}" if a["last_error"] else ""
            print(f"alert   {a['id']:>4}  {a['event']:<8} {a['state']:<8} x{a['attempts']}{error}")

    ctx.emit(data, human)


def cmd_alert_test(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        alert = alerts.queue_test_alert(session, ctx.user(session), ctx.args.channel)
    ctx.emit({"id": alert.id}, lambda: print(f"test alert {alert.id} queued; sent within 30 s"))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``canary forward`` and ``canary alert``."""
    forward = subparsers.add_parser("forward", help="forward received mail to your real address")
    commands = forward.add_subparsers(dest="forward_command", metavar="ACTION")
    commands.required = True
    add = commands.add_parser("add", help="add an address and mail it a verification link")
    add.add_argument("address")
    add.set_defaults(handler=cmd_add)
    verify = commands.add_parser("verify", help="verify an address with the token of its link")
    verify.add_argument("token", help="the token (or the whole link) from the verification mail")
    verify.set_defaults(handler=cmd_verify)
    rule = commands.add_parser("rule", help="forward a source's or an identity's mail")
    rule.add_argument("target", metavar="SOURCE|IDENTITY", help="source name/id or identity alias")
    rule.add_argument("address", help="one of your forwarding addresses")
    rule.add_argument("--drop-breach", action="store_true", help="do not forward breach mail")
    rule.set_defaults(handler=cmd_rule)
    lst = commands.add_parser("list", help="addresses, rules and recent forwards")
    lst.set_defaults(handler=cmd_list)
    for sub in (add, verify, rule, lst):
        add_user_flag(sub)
        add_json_flag(sub)

    alert = subparsers.add_parser("alert", help="alert channels (webhook, email) and their log")
    acts = alert.add_subparsers(dest="alert_command", metavar="ACTION")
    acts.required = True
    a_add = acts.add_parser("add", help="add a webhook URL or a verified email address")
    a_add.add_argument("kind", choices=alerts.CHANNEL_KINDS)
    a_add.add_argument("target")
    a_add.add_argument("--digest", choices=tuple(alerts.DIGESTS), default="none")
    a_add.add_argument("--digest-only", action="store_true", help="no alert per change")
    a_add.add_argument("--include-subjects", action="store_true", help="add recent subjects")
    a_add.set_defaults(handler=cmd_alert_add)
    a_list = acts.add_parser("list", help="channels and the delivery log")
    a_list.set_defaults(handler=cmd_alert_list)
    a_test = acts.add_parser("test", help="queue a test alert on a channel")
    a_test.add_argument("channel", type=int)
    a_test.set_defaults(handler=cmd_alert_test)
    for sub in (a_add, a_list, a_test):
        add_user_flag(sub)
        add_json_flag(sub)
