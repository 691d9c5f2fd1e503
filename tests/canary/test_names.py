"""Tagged names stay two edits apart; real-name variants run out honestly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from canary.errors import IdentityExhausted
from canary.names import (
    MIN_DISTANCE,
    NameIndex,
    PersonaNames,
    name_key,
    next_real_name_variant,
    spelling_variants,
)
from tests.support.names import assert_min_distance


def test_name_key_folds_case_accents_and_punctuation() -> None:
    assert name_key("Marc Q. Kollier") == "marc q kollier"
    assert name_key("  José  O'Brien-Smith ") == "jose o brien smith"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="abcde ", min_size=1, max_size=6), max_size=12),
    st.text(alphabet="abcde ", min_size=1, max_size=6),
)
def test_index_agrees_with_brute_force(keys: list[str], probe: str) -> None:
    index = NameIndex(keys)
    brute = all(Levenshtein.distance(probe, k) >= MIN_DISTANCE for k in keys)
    assert index.accepts(probe) == brute


def test_personas_keep_their_distance() -> None:
    index = NameIndex()
    personas = PersonaNames("de_DE", seed=7)
    names = [personas.next_name(index) for _ in range(1500)]
    assert_min_distance([name_key(n) for n in names])


def test_unknown_locale_is_refused() -> None:
    with pytest.raises(Exception, match="unknown Faker locale"):
        PersonaNames("xx_XX")


def test_real_name_variants_are_distinct_and_then_exhausted() -> None:
    index = NameIndex()
    rng = random.Random(3)
    variants = []
    with pytest.raises(IdentityExhausted, match="no more tagged variants of 'Marc Kollier'"):
        for _ in range(500):
            variants.append(next_real_name_variant("Marc Kollier", index, rng))
    assert len(variants) >= 10
    keys = [name_key(v) for v in variants] + ["marc kollier"]
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert Levenshtein.distance(a, b) >= MIN_DISTANCE, (a, b)
    # Variants still read as the person's name.
    assert all(v.split()[0].lower().startswith("mar") for v in variants)


def test_spelling_variants_change_the_word() -> None:
    variants = spelling_variants("Kollier")
    assert "Kolier" in variants
    assert "Kollier" not in variants
    assert all("lll" not in v for v in variants)
