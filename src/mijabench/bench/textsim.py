"""Exact and near-duplicate detection: MinHash over character shingles with LSH banding, then an exact
Jaccard check on the candidates.

Texts are compared after normalisation (case, accents kept, punctuation dropped, whitespace collapsed), as
sets of character k-grams. LSH only proposes candidates; the decision is the exact Jaccard similarity of the
two shingle sets, so the threshold means what it says and LSH can only cost recall, which the band layout
keeps negligible above the threshold (a pair at the threshold is missed with probability well under 1%).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import defaultdict

import numpy as np

_PRIME = np.uint64(4294967311)  # smallest prime above 2**32: a*h+b stays below 2**64 for 32-bit a, h, b
_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(text: str, k: int = 5) -> frozenset[str]:
    norm = normalize(text)
    if len(norm) <= k:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i:i + k] for i in range(len(norm) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _bands_for(threshold: float, num_perm: int) -> int:
    """Rows per band: the largest r whose LSH S-curve midpoint (1/b)^(1/r) lies well below the threshold."""
    best = 1
    for r in range(1, num_perm + 1):
        if num_perm % r:
            continue
        b = num_perm // r
        if (1 / b) ** (1 / r) <= threshold - 0.15:
            best = r
    return best


class NearDuplicateIndex:
    """Remembers texts under keys and answers "is this text a near duplicate of one already seen?".

    ``threshold`` is the Jaccard similarity of shingle sets at or above which two texts count as near
    duplicates; ``threshold >= 1`` keeps only exact duplicates (after normalisation).
    """

    def __init__(self, threshold: float = 0.8, *, k: int = 5, num_perm: int = 64, seed: int = 1):
        if not 0 < threshold:
            raise ValueError("threshold must be above 0")
        self.threshold, self.k, self.num_perm = threshold, k, num_perm
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, 2**32, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64)
        self._rows = _bands_for(min(threshold, 1.0), num_perm)
        self._exact: dict[str, str] = {}
        self._shingles: dict[str, frozenset[str]] = {}
        self._buckets: dict[tuple[int, bytes], list[str]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._exact)

    def _signature(self, sh: frozenset[str]) -> np.ndarray:
        hashes = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in sh), dtype=np.uint64, count=len(sh))
        if hashes.size == 0:
            return np.zeros(self.num_perm, dtype=np.uint64)
        return ((np.outer(hashes, self._a) + self._b) % _PRIME).min(axis=0)

    def _bands(self, signature: np.ndarray):
        for i in range(0, self.num_perm, self._rows):
            yield i, signature[i:i + self._rows].tobytes()

    def _prepare(self, text: str) -> tuple[str, frozenset[str] | None, np.ndarray | None]:
        norm = normalize(text)
        if self.threshold >= 1:
            return norm, None, None
        sh = shingles(text, self.k)
        return norm, sh, self._signature(sh)

    def _find(self, norm: str, sh: frozenset[str] | None, signature: np.ndarray | None) -> str | None:
        if norm in self._exact:
            return self._exact[norm]
        if sh is None:
            return None
        seen: set[str] = set()
        for band in self._bands(signature):
            for key in self._buckets.get(band, ()):
                if key not in seen:
                    seen.add(key)
                    if jaccard(sh, self._shingles[key]) >= self.threshold:
                        return key
        return None

    def _add(self, key: str, norm: str, sh: frozenset[str] | None, signature: np.ndarray | None) -> None:
        self._exact.setdefault(norm, key)
        if sh is None:
            return
        self._shingles[key] = sh
        for band in self._bands(signature):
            self._buckets[band].append(key)

    def find(self, text: str) -> str | None:
        """The key of a stored text this one duplicates (exactly or nearly), or None."""
        return self._find(*self._prepare(text))

    def add(self, key: str, text: str) -> None:
        self._add(key, *self._prepare(text))

    def add_if_new(self, key: str, text: str) -> str | None:
        """Add the text unless it duplicates a stored one; return that one's key (None when added)."""
        prepared = self._prepare(text)
        dup = self._find(*prepared)
        if dup is None:
            self._add(key, *prepared)
        return dup
