"""A rate-limited, de-duplicating queue of object keys: client-go's workqueue, as every controller-runtime
controller uses it, and the only way a reconcile is asked for in this operator.

- A key added while it waits runs once (events, resyncs and retries of one object collapse).
- Two priorities, as controller-runtime's priority queue has: what a watch event, a retry or a forecast tick asks
  for is handed out before what a periodic resync or a fleet-wide change asks for (LOW), so a new or changed
  object never waits behind a pass over a thousand unchanged ones. A low key added again at normal priority
  moves up.
- A key is never handed to two workers at once: one added while a worker holds it is handed out again when
  that worker is `done` with it, so one object's reconciles are serialized while unrelated objects never wait
  on each other (no striped locks).
- `add_after` holds a key back for a while (a requeue-after); the earliest of several delays wins.
- `busy_since` says which keys a worker held at any moment since a time (`now`): a pass that reads state in
  several steps (the orphan collector) leaves alone what a reconcile in flight may have half written.
- `add_rate_limited` is a retry after a failure: per key, the delay doubles from `base_delay` up to `max_delay`
  with jitter (so a thousand objects failing together do not retry together), and an overall token bucket
  bounds retries of all keys together; `forget` clears a key's failures once it succeeds.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
NORMAL, LOW = 0, 1
# Workers taking keys off one queue: reconciles mostly wait on API servers (the slowest writes, a Service's
# ClusterIP, land after the reconcile), so a burst of creates is served side by side.
DEFAULT_WORKERS = 16


class TokenBucket:
    """`qps` tokens a second, at most `burst` saved up; `reserve` says how long until the token it takes."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float]):
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self) -> float:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        jitter: float = 0.2,
        qps: float = 10.0,
        burst: int = 100,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        remember_done: float = 900.0,
    ):
        self.base_delay, self.max_delay, self.jitter = base_delay, max_delay, jitter
        self._clock = clock
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(qps, burst, clock)
        self._cond = threading.Condition()
        # One FIFO per priority; a key moved up stays behind in the low one, skipped when its turn comes.
        self._queues: tuple[deque[K], deque[K]] = (deque(), deque())
        self._dirty: dict[K, int] = {}  # queued (or to be queued again when its worker is done) -> its priority
        self._processing: set[K] = set()
        # (when, key) of every hand-back in the last `remember_done` seconds, oldest first.
        self.remember_done = remember_done
        self._finished: deque[tuple[float, K]] = deque()
        self._waiting: list[tuple[float, int, K]] = []  # (due, tie-breaker, key): a heap
        self._due: dict[K, float] = {}  # the earliest due time of each waiting key
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._queued_at: dict[K, float] = {}  # when each queued key was first asked for
        # Told how long each key handed out waited since it was asked for (client-go's queue duration).
        self.on_wait: Callable[[float], None] | None = None
        self._shutting_down = False

    # --- adding ------------------------------------------------------------------------------------------

    def add(self, key: K, priority: int = NORMAL) -> None:
        with self._cond:
            self._add(key, priority)

    def _add(self, key: K, priority: int = NORMAL) -> None:
        if self._shutting_down:
            return
        held = self._dirty.get(key)
        if held is not None and held <= priority:
            return
        self._dirty[key] = priority
        self._queued_at.setdefault(key, self._clock())
        if key not in self._processing:
            self._queues[priority].append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Add the key once `delay` seconds have passed (at once when it is not positive)."""
        with self._cond:
            if delay <= 0:
                self._add(key)
                return
            due = self._clock() + delay
            if self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._waiting, (due, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Add the key after its backoff (doubling per failure, with jitter) or the bucket's wait, whichever is
        longer; returns that delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            backoff = min(self.max_delay, self.base_delay * 2.0**failures)
            backoff = min(self.max_delay, backoff * (1.0 + self.jitter * self._rng.random()))
            delay = max(backoff, self._bucket.reserve())
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff from the beginning."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # --- taking ------------------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next key, which the caller must hand back with `done`; None when shut down (or on timeout)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._release_due()
                key = self._next()
                if key is not None:
                    self._processing.add(key)
                    del self._dirty[key]
                    asked = self._queued_at.pop(key, None)
                    if asked is not None and self.on_wait is not None:
                        self.on_wait(self._clock() - asked)
                    return key
                if self._shutting_down:
                    return None
                wait = self._waiting[0][0] - self._clock() if self._waiting else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(None if wait is None else max(0.0, wait))

    def _next(self) -> K | None:
        """The first key of the highest priority that still waits there (a key moved up is skipped below)."""
        for priority, queue in enumerate(self._queues):
            while queue:
                key = queue.popleft()
                if self._dirty.get(key) == priority and key not in self._processing:
                    return key
        return None

    def _release_due(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            if self._due.get(key) == due:
                del self._due[key]
                self._add(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            now = self._clock()
            self._finished.append((now, key))
            while self._finished[0][0] < now - self.remember_done:
                self._finished.popleft()
            if key in self._dirty:
                self._queues[self._dirty[key]].append(key)
                self._cond.notify()

    def now(self) -> float:
        """The queue's clock, for `busy_since`."""
        return self._clock()

    def busy_since(self, since: float) -> set[K]:
        """The keys a worker holds now or handed back at or after `since` (a time from `now`, at most
        `remember_done` seconds ago)."""
        with self._cond:
            recent = itertools.takewhile(lambda done: done[0] >= since, reversed(self._finished))
            return self._processing | {key for _, key in recent}

    # --- lifecycle and metrics ---------------------------------------------------------------------------

    def shut_down(self) -> None:
        """Workers get None from now on (what they hold, they finish); keys still queued or waiting are dropped,
        as nothing is added any more: the next leader lists every object again."""
        with self._cond:
            self._shutting_down = True
            for queue in self._queues:
                queue.clear()
            self._dirty.clear()
            self._queued_at.clear()
            self._waiting.clear()
            self._due.clear()
            self._cond.notify_all()

    def drop(self, key: K) -> None:
        """Forget everything about a key that no longer exists (its failures and any delayed add)."""
        with self._cond:
            self._failures.pop(key, None)
            self._due.pop(key, None)

    def depth(self) -> int:
        """Keys ready to be handed out now."""
        with self._cond:
            return sum(1 for key in self._dirty if key not in self._processing)

    def waiting(self) -> int:
        """Keys held back by add_after or a backoff."""
        with self._cond:
            return len(self._due)

    def busy(self) -> int:
        with self._cond:
            return len(self._processing)
