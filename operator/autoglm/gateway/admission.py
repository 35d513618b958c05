"""Who may call, and how much: API keys (from a Secret mounted as a file), each with a token-bucket rate limit
and a cap on requests in flight. Keys are compared in constant time and never logged; only their names are.
Pure but for the state it keeps: the clock is passed in."""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass, field

import yaml

from autoglm.gateway.errors import ErrorCode, GatewayError


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str = field(repr=False)
    rate_per_second: float = 10.0
    burst: int = 20
    max_in_flight: int = 16


def load_keys(text: str, source: str = "api keys") -> list[ApiKey]:
    """A YAML list of {name, key, ratePerSecond, burst, maxInFlight}; a bad entry is a ValueError naming the file,
    the entry and the field (never the key itself)."""
    doc = yaml.safe_load(text) or []
    if not isinstance(doc, list):
        raise ValueError(f"{source}: expected a list of API keys")
    keys = []
    for i, entry in enumerate(doc):
        where = f"{source}: entry {i}"
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("key"):
            raise ValueError(f"{where}: needs a name and a key")
        try:
            key = ApiKey(
                name=str(entry["name"]),
                secret=str(entry["key"]),
                rate_per_second=float(entry.get("ratePerSecond", 10.0)),
                burst=int(entry.get("burst", 20)),
                max_in_flight=int(entry.get("maxInFlight", 16)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} ({entry['name']}): {exc}") from None
        if key.rate_per_second <= 0 or key.burst < 1 or key.max_in_flight < 1:
            raise ValueError(f"{where} ({key.name}): ratePerSecond, burst and maxInFlight must be positive")
        keys.append(key)
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: key names must be unique")
    return keys


@dataclass
class _Bucket:
    tokens: float
    updated: float
    in_flight: int = 0


class Admission:
    """identify() then admit() before a request, release() after it."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys
        self._buckets: dict[str, _Bucket] = {}

    def identify(self, presented: str | None) -> ApiKey:
        """The key presented (a bearer token or MQTT password), compared with every key in constant time."""
        found = None
        for key in self.keys:  # no early exit: the time taken does not say which key matched, or how far
            if hmac.compare_digest((presented or "").encode(), key.secret.encode()):
                found = key
        if found is None or not presented:
            raise GatewayError.of(ErrorCode.UNAUTHENTICATED)
        return found

    def admit(self, key: ApiKey, now: float) -> None:
        bucket = self._buckets.setdefault(key.name, _Bucket(tokens=float(key.burst), updated=now))
        bucket.tokens = min(float(key.burst), bucket.tokens + (now - bucket.updated) * key.rate_per_second)
        bucket.updated = now
        if bucket.in_flight >= key.max_in_flight:
            raise GatewayError.of(ErrorCode.CONCURRENCY_LIMITED, retry_after=1)
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / key.rate_per_second)
            raise GatewayError.of(ErrorCode.RATE_LIMITED, retry_after=max(wait, 1))
        bucket.tokens -= 1
        bucket.in_flight += 1

    def release(self, key: ApiKey) -> None:
        bucket = self._buckets.get(key.name)
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1
