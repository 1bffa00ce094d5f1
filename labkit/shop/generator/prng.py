"""A counter-based random stream (SplitMix64) in integer arithmetic only.

The same (seed, name, position) gives the same number on every machine and every library
version: no floating-point transcendental functions and no third-party random streams.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class Stream:
    """An independent stream of random numbers named ``name`` under ``seed``."""

    def __init__(self, seed: int, name: str) -> None:
        digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
        self._key = np.uint64(int.from_bytes(digest[:8], "little"))
        self._position = 0

    def u64(self, n: int) -> np.ndarray:
        """``n`` uniformly distributed unsigned 64-bit integers."""
        counters = np.arange(self._position, self._position + n, dtype=np.uint64)
        self._position += n
        with np.errstate(over="ignore"):
            return _mix(self._key + counters * _GOLDEN)

    def integers(self, low: int, high: int, n: int) -> np.ndarray:
        """Integers in [low, high] (inclusive), as int64."""
        span = np.uint64(high - low + 1)
        return (self.u64(n) % span).astype(np.int64) + low

    def per_mille(self, rate: int, n: int) -> np.ndarray:
        """Booleans that are True with probability rate/1000."""
        return (self.u64(n) % np.uint64(1000)).astype(np.int64) < rate

    def weighted(self, weights: np.ndarray | list[int], n: int) -> np.ndarray:
        """Indices drawn with probability proportional to integer ``weights``."""
        cumulative = np.cumsum(np.asarray(weights, dtype=np.int64))
        draws = (self.u64(n) % np.uint64(cumulative[-1])).astype(np.int64)
        return np.searchsorted(cumulative, draws, side="right")

    def within(self, cumulative: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """For each i, an index in [low[i], high[i]] drawn by the weights behind ``cumulative``."""
        before = np.where(low > 0, cumulative[np.maximum(low - 1, 0)], 0)
        span = cumulative[high] - before
        draws = before + (self.u64(len(low)) % span.astype(np.uint64)).astype(np.int64)
        return np.searchsorted(cumulative, draws, side="right")

    def uuids(self, n: int) -> list[str]:
        """Version-4-shaped UUID strings."""
        hi, lo = self.u64(n), self.u64(n)
        hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x0000000000004000)
        lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
        out = []
        for high, low in zip(hi.tolist(), lo.tolist(), strict=True):
            s = f"{high:016x}{low:016x}"
            out.append(f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}")
        return out

    def picks(self, items: list[str], n: int) -> list[str]:
        index = self.integers(0, len(items) - 1, n)
        return [items[i] for i in index.tolist()]
