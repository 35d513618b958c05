"""Where the images the operator renders are pulled from: its own helper image (the shell that waits for a
conversion's artifact and removes released ones) and, for clusters that pull only from their own registry, a
mirror that every image reference is rewritten to, serving and conversion images included.

A reference keeps its repository path, tag and digest under the mirror, as registry mirrors and pull-through
caches lay images out: `vllm/vllm-openai:v0.11.0` (Docker Hub) becomes `MIRROR/vllm/vllm-openai:v0.11.0`,
`busybox:1.37` becomes `MIRROR/library/busybox:1.37`, `nvcr.io/nvidia/tritonserver:25.01` becomes
`MIRROR/nvidia/tritonserver:25.01`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from autoglm.api import BackendRuntime
from autoglm.api.backendruntime import Conversion

DEFAULT_HELPER_IMAGE = "busybox:1.37"
DOCKER_HUB = "docker.io"
# host[:port] then optional path segments, as a Docker reference's registry part (no scheme, tag or digest).
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def registry_problem(registry: str) -> str | None:
    """Why `registry` cannot be a mirror (None when it can): a host with an optional port and path."""
    if "://" in registry:
        return f"{registry!r} has a scheme: give the registry's host and path only (registry.example.com/mirror)"
    if not _REGISTRY.match(registry):
        return f"{registry!r} is not a registry host with an optional port and path (registry.example.com/mirror)"
    return None


def split_reference(reference: str) -> tuple[str, str]:
    """(registry, repository path with tag or digest) of an image reference, Docker's way: the first component
    is a registry when it has a dot or a port or is localhost; otherwise the image is Docker Hub's, whose
    one-word names live under library/."""
    first, slash, rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, reference if slash else f"library/{reference}"


def mirrored(reference: str, registry: str) -> str:
    """`reference` pulled from `registry` instead of its own ("" leaves it as it is)."""
    if not registry:
        return reference
    return f"{registry.rstrip('/')}/{split_reference(reference)[1]}"


@dataclass(frozen=True)
class Images:
    """The operator's image settings (its --helper-image and --image-registry)."""

    helper: str = DEFAULT_HELPER_IMAGE
    registry: str = ""

    def __post_init__(self) -> None:
        if not self.helper.strip():
            raise ValueError("the helper image is empty")
        if self.registry and (problem := registry_problem(self.registry)):
            raise ValueError(problem)

    @property
    def helper_image(self) -> str:
        """The helper image as pods pull it."""
        return mirrored(self.helper, self.registry)

    def catalog(self, runtimes: Sequence[BackendRuntime]) -> list[BackendRuntime]:
        """The runtimes with every image they name (serving, compile and quantization Jobs) pulled from the
        mirror."""
        if not self.registry:
            return list(runtimes)
        return [self._runtime(r) for r in runtimes]

    def _runtime(self, runtime: BackendRuntime) -> BackendRuntime:
        spec = runtime.spec
        update: dict[str, object] = {"image": mirrored(spec.image, self.registry)}
        if spec.conversion is not None:
            update["conversion"] = self._conversion(spec.conversion)
        if any(q.conversion is not None for q in spec.quantized_weights.values()):
            update["quantized_weights"] = {
                precision: q.model_copy(update={"conversion": self._conversion(q.conversion)}) if q.conversion else q
                for precision, q in spec.quantized_weights.items()
            }
        return runtime.model_copy(update={"spec": spec.model_copy(update=update)})

    def _conversion(self, conversion: Conversion) -> Conversion:
        return conversion.model_copy(update={"image": mirrored(conversion.image, self.registry)})
