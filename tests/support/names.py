"""Brute-force checks of the tagged-name distance rule, to hold the fast index to account."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from canary.names import MIN_DISTANCE


def assert_min_distance(keys: list[str]) -> None:
    """Every pair of ``keys`` is at least MIN_DISTANCE edits apart (all pairs compared)."""
    assert len(set(keys)) == len(keys), "duplicate names"
    distances = cdist(keys, keys, scorer=Levenshtein.distance, workers=1)
    for i in range(len(keys)):
        distances[i][i] = MIN_DISTANCE
    assert distances.min() >= MIN_DISTANCE
