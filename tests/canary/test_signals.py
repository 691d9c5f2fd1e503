"""Content signals: list headers, phishing hints, address leaks in every encoding."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.evidence_items import Evidence
from canary.signals import (
    Attachment,
    analyse,
    credential_wording,
    executable_attachments,
    extract_links,
    find_address,
    link_text_mismatches,
    list_headers,
    password_forms,
    text_links,
)

ADDR = "Jane.K7x2@canary.test"
LOWER = ADDR.lower()


def leak_codes(html: str, sender_org: str | None = "shop.test", text: str = "") -> set[str]:
    signals = analyse({}, text, html, [], ADDR, sender_org)
    return {str(e) for e in signals.address_leaks}


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize(
    ("token", "encoding"),
    [
        (LOWER, "clear"),
        (ADDR, "clear"),
        (quote(LOWER, safe=""), "url-encoded"),
        (quote(quote(LOWER, safe=""), safe=""), "url-encoded"),
        (b64(LOWER), "base64"),
        (b64(LOWER).rstrip("="), "base64"),
        (base64.urlsafe_b64encode(LOWER.encode()).decode().rstrip("="), "base64"),
        (quote(b64(LOWER), safe=""), "base64"),
        (b64('{"email":"' + LOWER + '","list":7}'), "base64"),
        (hashlib.md5(LOWER.encode()).hexdigest(), "md5"),
        (hashlib.sha1(LOWER.encode()).hexdigest(), "sha1"),
        (hashlib.sha256(LOWER.encode()).hexdigest(), "sha256"),
        (hashlib.sha256(LOWER.encode()).hexdigest().upper(), "sha256"),
    ],
)
def test_each_encoding_is_found(token: str, encoding: str) -> None:
    html = f'<img src="https://pixel.tracker.test/o.gif?u={token}&c=1">'
    assert leak_codes(html) == {
        f"address_in_third_party_url host=pixel.tracker.test encoding={encoding}"
    }


def test_no_leak_for_other_addresses_or_own_hosts() -> None:
    other = hashlib.sha256(b"someone@else.test").hexdigest()
    assert leak_codes(f'<img src="https://t.tracker.test/p?h={other}">') == set()
    # the sender's own organisation may know the address
    assert leak_codes(f'<a href="https://click.shop.test/u?e={LOWER}">x</a>') == set()
    assert leak_codes(f'<a href="mailto:{LOWER}">x</a>') == set()


def test_unknown_sender_makes_every_host_third_party() -> None:
    html = f'<a href="https://click.shop.test/u?e={LOWER}">x</a>'
    assert leak_codes(html, sender_org=None) == {
        "address_in_third_party_url host=click.shop.test encoding=clear"
    }


def test_leaks_in_srcset_background_css_and_text() -> None:
    md5 = hashlib.md5(LOWER.encode()).hexdigest()
    html = (
        f'<img srcset="https://a.test/1.png 1x, https://cdn.b.test/2.png?m={md5} 2x">'
        f'<table background="https://c.test/bg?e={quote(LOWER)}"></table>'
        f"<div style=\"background-image: url('https://d.test/x?e={b64(LOWER)}')\"></div>"
    )
    codes = leak_codes(html, text=f"Unsubscribe: https://e.test/u/{LOWER} now")
    assert codes == {
        "address_in_third_party_url host=cdn.b.test encoding=md5",
        "address_in_third_party_url host=c.test encoding=url-encoded",
        "address_in_third_party_url host=d.test encoding=base64",
        "address_in_third_party_url host=e.test encoding=clear",
    }


def test_extract_links_reads_anchor_text() -> None:
    links = extract_links('<p><a href="https://x.test/"><b>Your</b> bank</a><img src="/rel.png">')
    assert [(link.url, link.kind, link.text) for link in links] == [
        ("https://x.test/", "a", "Your bank"),
        ("/rel.png", "image", ""),
    ]
    assert [link.url for link in text_links("see https://a.test/x, and //b.test/y.")] == [
        "https://a.test/x",
        "//b.test/y",
    ]


def test_list_headers() -> None:
    assert list_headers({"List-Unsubscribe": "<mailto:u@x.test>"}) == (True, None)
    assert list_headers([("list-id", "Deals <deals.shop.test>")]) == (
        False,
        "Deals <deals.shop.test>",
    )
    assert list_headers({}) == (False, None)
    signals = analyse({"List-Unsubscribe": "<https://x>", "List-Id": "a"}, "", "", [], ADDR, None)
    assert signals.bulk
    assert Evidence("list_unsubscribe_present") in signals.evidence()


def test_link_text_naming_another_domain() -> None:
    html = (
        '<a href="https://login.evil.test/bank">www.bigbank.test</a>'
        '<a href="https://www.bigbank.test/">https://bigbank.test/login</a>'
        '<a href="https://t.evil.test/">Click here</a>'
    )
    assert link_text_mismatches(extract_links(html)) == (
        Evidence("link_text_mismatch", "text=bigbank.test href=evil.test"),
    )


def test_credential_wording_and_password_form() -> None:
    html = "<p>Please <b>verify   your\npassword</b></p><script>confirm your account</script>"
    assert credential_wording("", html) == (Evidence("credential_wording", "verify your password"),)
    assert credential_wording("Your account has been SUSPENDED.", "") == (
        Evidence("credential_wording", "your account has been suspended"),
    )
    assert credential_wording("Our spring sale starts now", "") == ()
    assert password_forms('<form action="https://x.test"><input type="PASSWORD" name=p></form>')
    assert password_forms("<input type=text>") == ()


def test_executable_attachments() -> None:
    found = executable_attachments(
        [
            Attachment("invoice.pdf.exe", "application/octet-stream"),
            Attachment("setup.msi"),
            Attachment("run.PS1"),
            Attachment("report.pdf", "application/pdf"),
            Attachment("noext", "application/x-msdownload"),
            Attachment("photo.jpg", "image/jpeg"),
        ]
    )
    assert [str(e) for e in found] == [
        "double_extension name=invoice.pdf.exe",
        "executable_attachment name=setup.msi",
        "executable_attachment name=run.PS1",
        "executable_attachment name=noext type=application/x-msdownload",
    ]


def test_find_address_ignores_non_addresses() -> None:
    assert find_address("https://x.test/?e=", "") is None
    assert find_address("https://x.test/?e=abc", "not-an-address") is None


@settings(max_examples=300, deadline=None)
@given(
    html=st.text(),
    text=st.text(),
    recipient=st.text(max_size=40),
    names=st.lists(st.text(max_size=30), max_size=4),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4),
)
def test_any_input_is_handled(
    html: str, text: str, recipient: str, names: list[str], headers: dict[str, str]
) -> None:
    atts = [Attachment(n, n) for n in names]
    signals = analyse(headers, text, html, atts, recipient, None)
    assert all(isinstance(e, Evidence) for e in signals.evidence())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("<>=\"'/ a=hrefsrcimgstyleurl(:)&#;x.test"), max_size=200))
def test_markup_soup_is_handled(html: str) -> None:
    analyse({}, "", html, [], ADDR, "shop.test")
