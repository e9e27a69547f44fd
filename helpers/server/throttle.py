"""Per-client-address throttling of failed authentications and activation attempts.

A token bucket per client address: every failure takes one token; the bucket holds ``burst`` tokens and
refills at ``rate`` per second. An address whose bucket is empty gets 429 ``Retry-After`` for every
request that would authenticate (a bearer token) or redeem an activation code, *without* the token or
code being checked, so guessing is bounded to ``rate`` per second. Successful requests cost nothing.

All clients behind one address (a NAT, or loopback in tests) share its bucket; raise the burst with
``SHARELAB_AUTH_FAILURE_BURST`` if a classroom behind one NAT is throttled.

The workers of one server share their buckets through the catalog
(:class:`~helpers.server.cluster.CatalogThrottle`); :class:`FailureMarks`, memory shared by the processes
forked after it was made, lets them skip that read for an address that has not failed lately, so a
successful request costs a few microseconds there too and only failures touch the database.
"""

from __future__ import annotations

import math
import mmap
import struct
import threading
import time
import zlib
from collections.abc import Callable

__all__ = ["FailureMarks", "FailureThrottle"]

_MAX_ADDRESSES = 100_000


class FailureThrottle:
    """Token buckets of failures, one per client address.

    :param burst: failures allowed at once.
    :param rate: failures per second allowed after the burst.
    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = float(max(1, burst))
        self.rate = float(rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, as of)
        self._lock = threading.Lock()

    def _level(self, address: str, now: float) -> float:
        tokens, since = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - since) * self.rate)

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: it may try now)."""
        with self._lock:
            if address not in self._buckets:
                return 0
            level = self._level(address, self._clock())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) / self.rate))

    def failed(self, address: str) -> None:
        """Count one failure of ``address``."""
        now = self._clock()
        with self._lock:
            level = self._level(address, now)
            self._buckets[address] = (max(0.0, level - 1), now)
            if len(self._buckets) > _MAX_ADDRESSES:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget addresses whose bucket is full again (then the oldest half if still too many)."""
        full = [a for a in self._buckets if self._level(a, now) >= self.burst]
        for a in full:
            del self._buckets[a]
        if len(self._buckets) > _MAX_ADDRESSES:
            oldest = sorted(self._buckets, key=lambda a: self._buckets[a][1])
            for a in oldest[: len(oldest) // 2]:
                del self._buckets[a]


class FailureMarks:
    """When an address last failed, roughly: the latest failure time (epoch seconds) of any address in
    each of :attr:`SLOTS` hash slots, in anonymous shared memory, so every process forked after it was
    made (the workers of one server, a restarted one included) sees the marks of all.

    A slot only ever errs towards "failed lately" (addresses share slots), so a caller may trust "no
    failure here for a while" and skip the exact (shared, slower) bucket.
    """

    SLOTS = 4096
    _SLOT = struct.Struct("d")

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, self.SLOTS * self._SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS

    def _offset(self, address: str) -> int:
        key = zlib.crc32(address.encode("utf-8", "surrogatepass"))
        return (key % self.SLOTS) * self._SLOT.size

    def mark(self, address: str, when: float) -> None:
        """Record a failure of ``address`` at ``when`` (a later mark is kept)."""
        offset = self._offset(address)
        if self._SLOT.unpack_from(self._mem, offset)[0] < when:
            self._SLOT.pack_into(self._mem, offset, when)

    def last(self, address: str) -> float:
        """The latest failure time in ``address``'s slot (0.0: none since the server started)."""
        return float(self._SLOT.unpack_from(self._mem, self._offset(address))[0])
