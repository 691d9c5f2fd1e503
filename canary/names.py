"""Tagged display names: normalisation, the distance index, personas and real-name variants.

Every tagged name of an owner must stay at a Levenshtein distance of at least 2 from
every other one, so that a single typo by a list keeper never turns one source's name
into another's. Checking a new name against 100,000 others pair by pair is too slow, so
:class:`NameIndex` keeps the single-deletion neighbourhood of every name (the SymSpell
idea): two strings within distance 1 always share a member of their neighbourhoods, and
the few candidates found that way are confirmed with an exact distance.
"""

from __future__ import annotations

import itertools
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence

from rapidfuzz.distance import Levenshtein

from canary.errors import IdentityExhausted, InvalidInput

MIN_DISTANCE = 2
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def name_key(name: str) -> str:
    """A name folded for comparison: no accents, case or punctuation, single spaces.

    "Marc Q. Kollier" and "marc q kollier" have the same key.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", stripped.casefold()).strip()


def _deletions(key: str) -> Iterator[str]:
    yield key
    for i in range(len(key)):
        yield key[:i] + key[i + 1 :]


class NameIndex:
    """A set of name keys that answers "is anything within distance 1 of this?" quickly."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._neighbourhood: dict[str, list[str]] = {}
        self._keys: set[str] = set()
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        """Remember ``key``."""
        if key in self._keys:
            return
        self._keys.add(key)
        for variant in _deletions(key):
            self._neighbourhood.setdefault(variant, []).append(key)

    def nearest_conflict(self, key: str) -> str | None:
        """A remembered key closer than :data:`MIN_DISTANCE` to ``key``, or None."""
        for variant in _deletions(key):
            for other in self._neighbourhood.get(variant, ()):
                if Levenshtein.distance(key, other, score_cutoff=MIN_DISTANCE - 1) < MIN_DISTANCE:
                    return other
        return None

    def accepts(self, key: str) -> bool:
        """True when ``key`` keeps the minimum distance from every remembered key."""
        return bool(key) and self.nearest_conflict(key) is None


# ---------------------------------------------------------------------- personas


class _WeightedNames:
    """One of Faker's name tables (plain or weighted), sampled without Faker's per-call cost."""

    def __init__(self, table: Sequence[str] | Mapping[str, float]) -> None:
        if isinstance(table, Mapping):
            self.names = list(table.keys())
            self.cum_weights: list[float] | None = list(itertools.accumulate(table.values()))
        else:
            self.names = list(table)
            self.cum_weights = None

    def pick(self, rng: random.Random) -> str:
        if self.cum_weights is None:
            return rng.choice(self.names)
        return rng.choices(self.names, cum_weights=self.cum_weights)[0]


class PersonaNames:
    """Synthetic personas from Faker's name tables for a locale, kept apart by a NameIndex."""

    # After this many near-misses in a row a middle initial is added, which multiplies
    # the space of names for locales with short name lists.
    _RETRIES_BEFORE_INITIAL = 20
    _MAX_TRIES = 2000

    def __init__(self, locale: str = "en_US", seed: int | None = None) -> None:
        from faker import Faker
        from faker.config import AVAILABLE_LOCALES

        if locale not in AVAILABLE_LOCALES:
            raise InvalidInput(f"unknown Faker locale {locale!r} (e.g. en_US, de_DE, fr_FR)")
        faker = Faker(locale)
        person = next(p for p in faker.get_providers() if "person" in type(p).__module__)
        self._first = _WeightedNames(person.first_names)
        self._last = _WeightedNames(person.last_names)
        self._rng = random.Random(seed)

    def next_name(self, index: NameIndex) -> str:
        """A persona name that ``index`` accepts; it is added to the index."""
        rng = self._rng
        for attempt in range(self._MAX_TRIES):
            first, last = self._first.pick(rng), self._last.pick(rng)
            if attempt >= self._RETRIES_BEFORE_INITIAL:
                name = f"{first} {rng.choice('ABCDEFGHJKLMNPRSTVW')}. {last}"
            else:
                name = f"{first} {last}"
            key = name_key(name)
            if index.accepts(key):
                index.add(key)
                return name
        raise IdentityExhausted(
            f"could not find a persona name at distance {MIN_DISTANCE} from the "
            f"{len(index)} names already issued; try another locale"
        )


# ---------------------------------------------------------------------- real-name variants

_SWAPS = (
    ("ph", "f"),
    ("f", "ph"),
    ("ck", "k"),
    ("k", "ck"),
    ("c", "k"),
    ("y", "i"),
    ("i", "y"),
    ("ie", "y"),
    ("ei", "ie"),
    ("s", "z"),
    ("z", "s"),
    ("th", "t"),
    ("t", "th"),
    ("w", "v"),
)


def spelling_variants(word: str) -> list[str]:
    """Plausible spellings of one name: doubled or single letters, common swaps."""
    variants: list[str] = []
    lower = word.lower()
    for i, c in enumerate(lower):
        if c.isalpha() and c not in "aeiouy" and i > 0:
            if i + 1 < len(lower) and lower[i + 1] == c:
                variants.append(word[: i + 1] + word[i + 2 :])  # Kollier -> Kolier
            elif lower[i - 1] != c:
                variants.append(word[: i + 1] + word[i] + word[i + 1 :])  # Marc -> Marrc
    for old, new in _SWAPS:
        pos = lower.find(old, 1)
        if pos > 0:
            variants.append(word[:pos] + new + word[pos + len(old) :])
    if lower[-1:] != "e":
        variants.append(word + "e")
    return list(dict.fromkeys(v for v in variants if v.lower() != lower))


def real_name_variants(real_name: str, rng: random.Random | None = None) -> Iterator[str]:
    """Tagged versions of a person's real name, most natural first.

    A middle initial comes first, then spelling variants of the first or last name, then
    two middle initials, then combinations. The caller filters them through a
    :class:`NameIndex`.
    """
    parts = real_name.split()
    if len(parts) < 2:
        raise InvalidInput(f"a real name needs a first and a last name, got {real_name!r}")
    first, middle, last = parts[0], parts[1:-1], parts[-1]
    rng = rng or random.Random()
    initials = list("ABCDEFGHJKLMNPRSTVW")
    rng.shuffle(initials)
    middle_text = " ".join(middle)
    base_middle = [middle_text] if middle_text else []
    for initial in initials:
        yield " ".join([first, *base_middle, f"{initial}.", last])
    firsts = spelling_variants(first)
    lasts = spelling_variants(last)
    rng.shuffle(firsts)
    rng.shuffle(lasts)
    for variant in firsts:
        yield " ".join([variant, *base_middle, last])
    for variant in lasts:
        yield " ".join([first, *base_middle, variant])
    for a, b in itertools.permutations(initials, 2):
        yield " ".join([first, *base_middle, f"{a}.", f"{b}.", last])
    for initial in initials:
        for f in firsts:
            yield " ".join([f, *base_middle, f"{initial}.", last])
        for s in lasts:
            yield " ".join([first, *base_middle, f"{initial}.", s])
    for f in firsts:
        for s in lasts:
            yield " ".join([f, *base_middle, s])


def next_real_name_variant(real_name: str, index: NameIndex, rng: random.Random) -> str:
    """The next tagged variant of ``real_name`` that ``index`` accepts (added to it).

    The untagged real name itself is reserved in the index, so no variant is one typo
    away from it. Raises :class:`IdentityExhausted` when every variant is used up.
    """
    index.add(name_key(real_name))
    for candidate in real_name_variants(real_name, rng):
        key = name_key(candidate)
        if index.accepts(key):
            index.add(key)
            return candidate
    raise IdentityExhausted(
        f"no more tagged variants of {real_name!r} keep distance {MIN_DISTANCE} from the "
        "ones already issued; use a synthetic persona (omit --real-name) for further sources"
    )
