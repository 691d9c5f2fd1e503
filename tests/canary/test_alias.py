"""Alias tokens carry a check character; addresses normalise for lookup."""

from __future__ import annotations

from canary.alias import (
    ALPHABET,
    canonical_token,
    check_char,
    is_role_name,
    new_token,
    normalise_address,
    token_is_valid,
)


def test_new_tokens_are_valid_and_long_enough() -> None:
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in tokens:
        assert len(token) == 12  # 11 data characters = 55 bits, plus the check
        assert token_is_valid(token)
        assert set(token) <= set(ALPHABET)


def test_every_single_substitution_is_detected() -> None:
    token = new_token()
    for i in range(len(token)):
        for c in ALPHABET:
            if c != token[i]:
                typo = token[:i] + c + token[i + 1 :]
                assert not token_is_valid(typo), typo


def test_every_adjacent_swap_is_detected() -> None:
    for _ in range(500):
        token = new_token()
        for i in range(len(token) - 1):
            if token[i] != token[i + 1]:
                swapped = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
                assert not token_is_valid(swapped), (token, swapped)


def test_crockford_reading_of_confusable_letters() -> None:
    data = "1100000000"
    token = data + check_char(data)
    assert token_is_valid(token.replace("1", "l", 1).replace("0", "o", 1).upper())
    assert canonical_token("IL-O0") == "1100"
    assert canonical_token("u") is None


def test_addresses_normalise_case_and_plus_tags() -> None:
    assert normalise_address("Shop.X+News@Canary.Test") == "shop.x@canary.test"
    assert normalise_address("<abc@canary.test.>") == "abc@canary.test"


def test_role_names() -> None:
    for name in ("postmaster", "Abuse", "noreply", "webmaster", "hostmaster"):
        assert is_role_name(name)
    assert not is_role_name("amber.otter.417")
