"""Routes: model name and version -> the backends that serve it, weighted by their ready replicas, with
outlier ejection (a backend that fails `failures` requests in a row is left out for `ejection_seconds`, doubled
each time it is ejected again, as Envoy's outlier detection does). Pure: the clock and the random draw are
passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoglm.gateway.errors import ErrorCode, GatewayError
from autoglm.gateway.translate import TRANSLATORS

LATEST = "latest"


@dataclass(frozen=True)
class Backend:
    """One place a model is served: a member cluster's Service (or a static URL) and its ready replicas."""

    model: str
    version: str
    url: str
    member: str = "static"
    weight: int = 1
    served_name: str = ""  # the name the backend knows the model by; the model name when empty
    translator: str | None = None  # a backend whose API is not OpenAI-shaped: the translator to it

    @property
    def served(self) -> str:
        """The model's name as this backend knows it (what requests to it carry)."""
        return self.served_name or self.model

    @property
    def key(self) -> str:
        return f"{self.member}/{self.url}"


def static_backends(specs: Iterable[str]) -> list[Backend]:
    """`MODEL=URL` or `MODEL@VERSION=URL`, optionally `;translator=NAME` for a server whose API is not
    OpenAI-shaped (the gateway's --backend), one Backend each; a bad spec is a ValueError naming it."""
    found = []
    for spec in specs:
        name, sep, target = spec.partition("=")
        url, _, option = target.partition(";")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"--backend {spec!r}: expected MODEL=URL or MODEL@VERSION=URL with an http(s) URL")
        translator = option.removeprefix("translator=") if option else None
        if translator is not None and (not option.startswith("translator=") or translator not in TRANSLATORS):
            raise ValueError(f"--backend {spec!r}: after ';' expected translator=NAME, one of {', '.join(TRANSLATORS)}")
        model, _, version = name.partition("@")
        found.append(Backend(model=model, version=version or LATEST, url=url.rstrip("/"), translator=translator))
    return found


def deployment_backends(
    md: Mapping[str, Any], endpoints: Mapping[str, str], translators: Mapping[str, str | None] | None = None
) -> list[Backend]:
    """A ModelDeployment's backends: one per member in status.clusters with ready replicas and an endpoint
    (member -> base URL of the deployment's Service there), weighted by those replicas, with the translator of
    the member's runtime where its API is not OpenAI-shaped (member -> translator). Callers name the
    deployment, which is also the name its runtimes serve the model under (--served-model-name)."""
    meta, spec, status = md.get("metadata") or {}, md.get("spec") or {}, md.get("status") or {}
    model = served = str(meta.get("name", ""))
    version = (spec.get("model") or {}).get("revision") or LATEST
    found = []
    for cluster in status.get("clusters") or []:
        ready, member = int(cluster.get("ready") or 0), cluster.get("name", "")
        if ready > 0 and member in endpoints:
            url = endpoints[member].rstrip("/")
            translator = (translators or {}).get(member)
            found.append(Backend(model, version, url, member, ready, served, translator))
    return found


@dataclass
class _Health:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0


@dataclass
class Router:
    backends: Sequence[Backend]
    failures: int = 3
    ejection_seconds: float = 30.0
    max_ejection_seconds: float = 300.0
    _health: dict[str, _Health] = field(default_factory=dict)

    def models(self) -> list[tuple[str, str]]:
        return sorted({(b.model, b.version) for b in self.backends})

    def candidates(self, model: str, version: str, now: float) -> list[Backend]:
        """The backends of this model and version not ejected at `now`; `latest` matches any version when the
        model has no version called latest. None configured: MODEL_NOT_FOUND; all ejected: NO_BACKEND_AVAILABLE."""
        serving = [b for b in self.backends if b.model == model]
        exact = [b for b in serving if b.version == version]
        chosen = exact or (serving if version == LATEST else [])
        if not chosen:
            raise GatewayError.of(ErrorCode.MODEL_NOT_FOUND, model=model, version=version)
        healthy = [b for b in chosen if self._health.get(b.key, _Health()).ejected_until <= now]
        if not healthy:
            raise GatewayError.of(ErrorCode.NO_BACKEND_AVAILABLE, model=model)
        return healthy

    def pick(self, model: str, version: str, now: float, draw: float, exclude: Iterable[str] = ()) -> Backend:
        """One backend by weight; `draw` is uniform in [0, 1). `exclude`: keys already tried (a retry)."""
        skip = set(exclude)
        options = [b for b in self.candidates(model, version, now) if b.key not in skip]
        if not options:
            raise GatewayError.of(ErrorCode.NO_BACKEND_AVAILABLE, model=model)
        total = sum(max(b.weight, 1) for b in options)
        point = draw * total
        for backend in options:
            point -= max(backend.weight, 1)
            if point < 0:
                return backend
        return options[-1]

    def succeeded(self, backend: Backend) -> None:
        health = self._health.setdefault(backend.key, _Health())
        health.failures = 0

    def failed(self, backend: Backend, now: float) -> bool:
        """Count a failed request; True when it ejects the backend."""
        health = self._health.setdefault(backend.key, _Health())
        health.failures += 1
        if health.failures < self.failures:
            return False
        seconds = min(self.ejection_seconds * 2**health.ejections, self.max_ejection_seconds)
        health.ejections += 1
        health.failures = 0
        health.ejected_until = now + seconds
        return True
