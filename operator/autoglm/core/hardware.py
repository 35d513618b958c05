"""Hardware abstraction: Node objects (labels, capacity, allocatable) -> accelerator pools.

A pool is a set of nodes with the same accelerator product, per-device memory and devices per node, so
the planner can reason about "8 x H100-80GB per node, 12 nodes, 40 devices free" in one step.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import yaml
from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from autoglm.api.common import Precision

GIB = 1024**3
MIB = 1024**2

Node = Mapping[str, Any]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MemoryLabel(_Frozen):
    key: str
    unit: Literal["MiB", "G"]


class ComputeCapabilityLabels(_Frozen):
    major: str
    minor: str


class CapabilityPrecisions(_Frozen):
    min: str
    precisions: list[Precision]


class VendorRule(_Frozen):
    vendor: str
    resources: list[str]
    resource_prefixes: list[str] = Field(default_factory=list, alias="resourcePrefixes")
    product_labels: list[str] = Field(alias="productLabels")
    memory_labels: list[MemoryLabel] = Field(default_factory=list, alias="memoryLabels")
    compute_capability_labels: ComputeCapabilityLabels | None = Field(default=None, alias="computeCapabilityLabels")
    collective: str
    collective_env: dict[str, str] = Field(default_factory=dict, alias="collectiveEnv")
    precisions_by_compute_capability: list[CapabilityPrecisions] = Field(
        default_factory=list, alias="precisionsByComputeCapability"
    )


class CpuRule(_Frozen):
    preferred_precisions: list[Precision] = Field(alias="preferredPrecisions")
    base_precisions: list[Precision] = Field(alias="basePrecisions")
    feature_labels: dict[str, str] = Field(alias="featureLabels")
    bf16_features: list[str] = Field(alias="bf16Features")
    reserved_fraction: float = Field(alias="reservedFraction", ge=0, lt=1)


class ProductSpec(_Frozen):
    vendor: str
    product: str
    match: list[str]
    memory_gib: float | None = Field(default=None, alias="memoryGiB")
    compute_capability: str | None = Field(default=None, alias="computeCapability")
    family: str
    interconnect: str
    precisions: list[Precision]
    peak_tflops_bf16: float | None = Field(default=None, alias="peakTflopsBf16")
    peak_tflops_fp16: float | None = Field(default=None, alias="peakTflopsFp16")
    peak_tops_int8: float | None = Field(default=None, alias="peakTopsInt8")
    watts: float | None = None
    soc_version: str | None = Field(default=None, alias="socVersion")


class AcceleratorTable(_Frozen):
    """The data table of vendors and products (operator/autoglm/data/accelerators.yaml)."""

    vendors: list[VendorRule]
    cpu: CpuRule
    products: list[ProductSpec]

    _index: dict[tuple[str, str], ProductSpec] = PrivateAttr(default_factory=dict)
    _resource_rules: dict[str, VendorRule] = PrivateAttr(default_factory=dict)
    _descriptions: dict[tuple[Any, ...], Any] = PrivateAttr(default_factory=dict)

    def description_cache(self) -> dict[tuple[Any, ...], Any]:
        """Device descriptions by label signature, filled while building inventories with this table."""
        return self._descriptions

    def model_post_init(self, context: Any, /) -> None:
        for spec in self.products:
            for name in spec.match:
                self._index[(spec.vendor, _normalise(name))] = spec

    def rule_for_resource(self, resource: str) -> VendorRule | None:
        """The vendor rule that owns an extended resource name, if any."""
        if not self._resource_rules:
            for vendor in self.vendors:
                for name in vendor.resources:
                    self._resource_rules[name] = vendor
        found = self._resource_rules.get(resource)
        if found is None:
            found = next((r for r in self.vendors if any(resource.startswith(p) for p in r.resource_prefixes)), None)
        return found

    def product_index(self) -> dict[tuple[str, str], ProductSpec]:
        """(vendor, normalised product name) -> product facts."""
        return self._index


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_accelerator_table(text: str | None = None) -> AcceleratorTable:
    """The shipped table, or one given as YAML text."""
    if text is None:
        text = resources.files("autoglm").joinpath("data/accelerators.yaml").read_text(encoding="utf-8")
    return AcceleratorTable.model_validate(yaml.safe_load(text))


class AcceleratorPool(_Frozen):
    """Nodes with the same accelerator, memory per device and devices per node."""

    name: str = Field(description="Stable pool name: vendor-product-x<devices per node>.")
    vendor: str
    product: str
    known: bool = Field(description="The product is in the accelerator table (or fully described by labels).")
    unknown_reason: str | None = None
    resource_name: str | None = Field(description="Extended resource to request; None for CPU pools.")
    memory_bytes: int = Field(ge=0, description="Usable memory of one device (CPU: one node's allocatable).")
    memory_source: str = Field(description="Where the memory figure came from.")
    devices_per_node: int = Field(ge=1)
    node_names: list[str]
    total_devices: int = Field(ge=0)
    free_devices: int = Field(ge=0)
    free_by_node: dict[str, int] = Field(description="Free devices on each schedulable, Ready node.")
    allocatable_by_node: dict[str, int] = Field(
        default_factory=dict, description="Allocatable devices of each schedulable, Ready node (free or not)."
    )
    free_histogram: dict[int, int] = Field(
        default_factory=dict, description="How many nodes have exactly k devices free (k > 0)."
    )
    holders: dict[str, int] = Field(
        default_factory=dict,
        description="Who holds this pool's taken devices: namespace/ModelDeployment (or namespace/pod) -> devices.",
    )
    compute_capability: str | None = None
    family: str | None = None
    interconnect: str
    rdma: bool = Field(default=False, description="Every node reports an RDMA-capable NIC.")
    collective: str | None = None
    collective_env: dict[str, str] = Field(default_factory=dict, description="Vendor collective-library env.")
    precisions: list[Precision]
    preferred_precisions: list[Precision]
    mig: bool = False
    max_tensor_parallel: int | None = None
    peak_tflops_bf16: float | None = None
    peak_tflops_fp16: float | None = None
    peak_tops_int8: float | None = None
    watts: float | None = None
    soc_version: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels that pin this pool.")
    taints: list[dict[str, str]] = Field(default_factory=list, description="Taints common to the pool.")
    raw_labels: dict[str, str] = Field(default_factory=dict, description="Vendor labels, kept for unknowns.")

    @property
    def is_cpu(self) -> bool:
        return self.resource_name is None


class Inventory(_Frozen):
    pools: list[AcceleratorPool]
    nodes_seen: int
    nodes_without_accelerator_or_cpu_fit: int = 0

    def known_pools(self) -> list[AcceleratorPool]:
        return [p for p in self.pools if p.known]


# ---------------------------------------------------------------------------------------------------------
# Node reading


def nodes_from_document(doc: Any) -> list[dict[str, Any]]:
    """Nodes from `kubectl get nodes -o yaml` (a List), a single Node, or a list of Nodes."""
    if doc is None:
        return []
    if isinstance(doc, list):
        return [n for d in doc for n in nodes_from_document(d)]
    if not isinstance(doc, dict):
        raise ValueError(f"expected a Node or a List of Nodes, got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind in ("List", "NodeList"):
        return [dict(item) for item in doc.get("items") or []]
    if kind == "Node":
        return [dict(doc)]
    raise ValueError(f"expected kind Node, NodeList or List, got {kind!r}")


def _quantity(value: Any) -> Decimal:
    return Decimal(parse_quantity(value)) if value is not None else Decimal(0)  # type: ignore[no-untyped-call]


def _is_schedulable(node: Node) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    # A node object with no conditions (a fixture, a node not yet reported) is taken at its word.
    return True


@dataclass(frozen=True, slots=True)
class _NodeFacts:
    name: str
    labels: dict[str, str]
    allocatable: dict[str, Any]
    capacity: dict[str, Any]
    taints: list[dict[str, str]]
    schedulable: bool


def _facts(node: Node) -> _NodeFacts:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    taints = [
        {k: str(v) for k, v in t.items() if k in ("key", "value", "effect")}
        for t in (node.get("spec") or {}).get("taints") or []
    ]
    return _NodeFacts(
        name=str(meta.get("name", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        allocatable=dict(status.get("allocatable") or {}),
        capacity=dict(status.get("capacity") or status.get("allocatable") or {}),
        taints=taints,
        schedulable=_is_schedulable(node),
    )


def _used_by_node(pods: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """Extended resources requested by pods that still hold them, per (node, resource)."""
    used: dict[tuple[str, str], Decimal] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            res = container.get("resources") or {}
            requests = {**(res.get("limits") or {}), **(res.get("requests") or {})}
            for name, qty in requests.items():
                used[(node, name)] = used.get((node, name), Decimal(0)) + _quantity(qty)
    return used


@dataclass(frozen=True, slots=True)
class _Device:
    """One node's view of one accelerator kind, before nodes are grouped into pools."""

    vendor: str
    product: str
    known: bool
    unknown_reason: str | None
    resource_name: str | None
    memory_bytes: int
    memory_source: str
    count: int
    free: int
    spec: ProductSpec | None
    compute_capability: str | None
    precisions: list[Precision]
    preferred: list[Precision]
    collective: str | None
    collective_env: dict[str, str]
    mig: bool
    selector: dict[str, str]
    raw_labels: dict[str, str]
    allocatable: int = 0


_MIG_PROFILE = re.compile(r"mig-(\d+)g\.(\d+)gb", re.IGNORECASE)
_PREFERENCE: list[Precision] = [Precision.FP8, Precision.BF16, Precision.FP16, Precision.INT8, Precision.INT4]


def _label_memory(labels: Mapping[str, str], rule: VendorRule) -> tuple[int, str] | None:
    for mem in rule.memory_labels:
        raw = labels.get(mem.key)
        if not raw:
            continue
        digits = re.match(r"^\s*(\d+(?:\.\d+)?)", raw)
        if not digits:
            continue
        value = float(digits.group(1))
        factor = MIB if mem.unit == "MiB" else GIB
        return int(value * factor), f"label {mem.key}"
    return None


def _label_compute_capability(labels: Mapping[str, str], rule: VendorRule) -> str | None:
    cc = rule.compute_capability_labels
    if cc and labels.get(cc.major) and labels.get(cc.minor):
        return f"{labels[cc.major]}.{labels[cc.minor]}"
    return None


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, _, minor = cc.partition(".")
    return int(major), int(minor or 0)


def _precisions_for_cc(rule: VendorRule, cc: str | None) -> list[Precision]:
    if cc is None:
        return []
    for row in rule.precisions_by_compute_capability:
        if _cc_tuple(cc) >= _cc_tuple(row.min):
            return list(row.precisions)
    return []


def _match_product(
    labels: Mapping[str, str], rule: VendorRule, table: AcceleratorTable
) -> tuple[ProductSpec | None, str | None, str | None, bool]:
    """(spec, raw product name, label key it came from, is MIG) for the first product label present."""
    index = table.product_index()
    first_raw: tuple[str, str] | None = None
    for key in rule.product_labels:
        raw = labels.get(key)
        if not raw:
            continue
        mig = "-mig-" in raw.lower()
        base = re.split(r"-MIG-", raw, flags=re.IGNORECASE)[0]
        spec = index.get((rule.vendor, _normalise(base)))
        if spec is not None:
            return spec, raw, key, mig
        first_raw = first_raw or (raw, key)
    if first_raw:
        return None, first_raw[0], first_raw[1], "-mig-" in first_raw[0].lower()
    return None, None, None, False


def _vendor_labels(labels: Mapping[str, str], rule: VendorRule) -> dict[str, str]:
    prefixes = {k.split("/")[0] for k in rule.product_labels} | {r.split("/")[0] for r in rule.resources}
    return {k: v for k, v in labels.items() if k.split("/")[0] in prefixes or k.startswith("autoglm.io/")}


def _accelerator_devices(facts: _NodeFacts, table: AcceleratorTable) -> list[_Device]:
    """The node's devices with every allocatable one free (pods are taken off later, by with_used)."""
    devices: list[_Device] = []
    names = [r for r in facts.allocatable if "/" in r]
    names += [r for r in facts.capacity if "/" in r and r not in facts.allocatable]
    for resource_name in names:
        rule = table.rule_for_resource(resource_name)
        if rule is None:
            continue
        count = int(_quantity(facts.capacity.get(resource_name, facts.allocatable.get(resource_name))))
        allocatable = int(_quantity(facts.allocatable.get(resource_name, 0)))
        if count <= 0 and allocatable <= 0:
            continue
        free = allocatable if facts.schedulable else 0
        device = _describe_cached(facts, rule, table, resource_name)
        devices.append(replace(device, count=max(count, allocatable), free=free, allocatable=allocatable))
    return devices


def _describe_cached(facts: _NodeFacts, rule: VendorRule, table: AcceleratorTable, resource_name: str) -> _Device:
    """Nodes of one product carry the same vendor labels; describe each distinct label set once."""
    keys = [*rule.product_labels, *(m.key for m in rule.memory_labels)]
    if rule.compute_capability_labels:
        keys += [rule.compute_capability_labels.major, rule.compute_capability_labels.minor]
    signature = (rule.vendor, resource_name, tuple(facts.labels.get(k) for k in keys))
    cache = table.description_cache()
    device = cache.get(signature)
    if device is None:
        device = _describe(facts, rule, table, resource_name, 0, 0)
        cache[signature] = device
    return device


def _describe(
    facts: _NodeFacts, rule: VendorRule, table: AcceleratorTable, resource_name: str, count: int, free: int
) -> _Device:
    labels = facts.labels
    spec, raw, label_key, mig = _match_product(labels, rule, table)
    mig_profile = _MIG_PROFILE.search(resource_name)
    if mig_profile:
        mig = True
    cc = _label_compute_capability(labels, rule) or (spec.compute_capability if spec else None)
    label_mem = _label_memory(labels, rule)
    memory: tuple[int, str] | None
    if mig_profile:
        memory = (int(mig_profile.group(2)) * 10**9, f"MIG profile {mig_profile.group(0)}")
    elif label_mem is not None:
        memory = label_mem
    elif spec is not None and spec.memory_gib is not None:
        memory = (int(spec.memory_gib * GIB), "accelerator table")
    else:
        memory = None

    precisions = list(spec.precisions) if spec else _precisions_for_cc(rule, cc)
    known = memory is not None and bool(precisions)
    reason = None
    product_name = spec.product if spec else (raw or "unknown")
    if not known:
        missing = []
        if memory is None:
            missing.append("device memory")
        if not precisions:
            missing.append("supported precisions")
        seen = f"product label {label_key}={raw!r}" if raw else "no product label"
        reason = (
            f"unknown {rule.vendor} accelerator on {resource_name} ({seen}); {', '.join(missing)} not known. "
            "Add the product to the accelerator table or run the autoglm node probe to label the node."
        )
    if mig and spec is not None:
        product_name = (
            f"{spec.product}-MIG-{mig_profile.group(0)[4:] if mig_profile else (raw or '').split('-MIG-')[-1]}"
        )
    selector = {label_key: raw} if label_key and raw else {}
    return _Device(
        vendor=rule.vendor,
        product=product_name,
        known=known,
        unknown_reason=reason,
        resource_name=resource_name,
        memory_bytes=memory[0] if memory else 0,
        memory_source=memory[1] if memory else "unknown",
        count=count,
        free=free,
        spec=spec,
        compute_capability=cc,
        precisions=precisions,
        preferred=[p for p in _PREFERENCE if p in precisions],
        collective=rule.collective,
        collective_env=dict(rule.collective_env),
        mig=mig,
        selector=selector,
        raw_labels=_vendor_labels(labels, rule) if not known else {},
    )


def _cpu_device(facts: _NodeFacts, table: AcceleratorTable) -> _Device | None:
    memory = _quantity(facts.allocatable.get("memory"))
    if memory <= 0:
        return None
    rule = table.cpu
    flags = {name for name, key in rule.feature_labels.items() if facts.labels.get(key) == "true"}
    precisions = list(rule.base_precisions)
    if flags & set(rule.bf16_features):
        precisions.append(Precision.BF16)
    usable = int(memory * Decimal(1 - rule.reserved_fraction))
    arch = facts.labels.get("kubernetes.io/arch", "amd64")
    feature_tag = (
        "amx" if "amxbf16" in flags else "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "base"
    )
    gib = usable // GIB
    return _Device(
        vendor="cpu",
        product=f"{arch}-{feature_tag}",
        known=True,
        unknown_reason=None,
        resource_name=None,
        memory_bytes=gib * GIB,
        memory_source=f"node allocatable memory less {rule.reserved_fraction:.0%} reserved",
        count=1,
        free=1 if facts.schedulable else 0,
        spec=None,
        compute_capability=None,
        precisions=precisions,
        preferred=[p for p in rule.preferred_precisions if p in precisions],
        collective=None,
        collective_env={},
        mig=False,
        selector={"kubernetes.io/arch": arch},
        raw_labels={},
    )


@dataclass(frozen=True, slots=True)
class NodeDevices:
    """What one node brings to the pools (before any pod is counted): a pure function of the node, so a
    caller that sees the same node again may reuse it (see build_inventory's `known`)."""

    facts: _NodeFacts
    devices: tuple[_Device, ...]


def node_devices(node: Node, table: AcceleratorTable) -> NodeDevices:
    facts = _facts(node)
    devices = _accelerator_devices(facts, table)
    if not devices:
        cpu = _cpu_device(facts, table)
        devices = [cpu] if cpu else []
    return NodeDevices(facts, tuple(devices))


def build_inventory(
    nodes: Iterable[Node],
    table: AcceleratorTable | None = None,
    pods: Iterable[Mapping[str, Any]] = (),
    known: Mapping[int, tuple[Node, NodeDevices]] | None = None,
) -> Inventory:
    """Group nodes into accelerator pools; pods (optional) subtract the devices they hold from `free`.

    `known` (id of a node object -> that object and its NodeDevices, from an earlier call) lets a caller
    whose node objects stay the same while unchanged (a watch cache) pay only for the nodes that changed;
    the result is the same either way."""
    table = table or load_accelerator_table()
    groups: dict[tuple[Any, ...], list[tuple[_NodeFacts, _Device]]] = {}
    seen = 0
    for node in nodes:
        seen += 1
        hit = known.get(id(node)) if known is not None else None
        entry = hit[1] if hit is not None and hit[0] is node else node_devices(node, table)
        for dev in entry.devices:
            key = (dev.vendor, dev.product, dev.resource_name, dev.memory_bytes, dev.count, dev.known)
            groups.setdefault(key, []).append((entry.facts, dev))
    pools = [_pool(members, table) for members in groups.values()]
    pools.sort(key=lambda p: p.name)
    return with_used(Inventory(pools=pools, nodes_seen=seen), pods)


def with_released(inventory: Inventory, pods: Iterable[Mapping[str, Any]]) -> Inventory:
    """The inventory as if these pods, which it counted as holding devices, were gone: a deployment may keep
    using what it holds. Costs what the pods cost, not what the nodes cost, so one inventory per snapshot
    serves every deployment; pools the pods do not touch are shared."""
    return _moved(inventory, pods, taken=False)


def with_used(inventory: Inventory, pods: Iterable[Mapping[str, Any]]) -> Inventory:
    """The inventory with these pods' devices taken: `build_inventory(nodes, table, pods)` equals
    `with_used(build_inventory(nodes, table), pods)`, but a new pod costs O(pods), not a pass over every node."""
    return _moved(inventory, pods, taken=True)


def _holder(pod: Mapping[str, Any]) -> str:
    """Who a pod holds devices for: its ModelDeployment where the operator made it, else the pod itself."""
    meta = pod.get("metadata") or {}
    owner = (meta.get("labels") or {}).get("autoglm.io/modeldeployment") or meta.get("name") or "?"
    return f"{meta.get('namespace') or 'default'}/{owner}"


def _held(pods: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, int]]:
    """(node, resource) -> holder -> devices, for the pods that still hold them."""
    held: dict[tuple[str, str], dict[str, int]] = {}
    for pod in pods:
        holder = _holder(pod)
        for key, amount in _used_by_node([pod]).items():
            counts = held.setdefault(key, {})
            counts[holder] = counts.get(holder, 0) + int(amount)
    return held


def _moved(inventory: Inventory, pods: Iterable[Mapping[str, Any]], taken: bool) -> Inventory:
    held = _held(pods)  # one pass over the pods: what each holds, and so what is used on each node
    if not held:
        return inventory
    by_resource: dict[str, dict[str, int]] = {}
    for (node_name, resource), counts in held.items():
        by_resource.setdefault(resource, {})[node_name] = sum(counts.values())
    pools = []
    for pool in inventory.pools:
        touched = {
            node: qty
            for node, qty in by_resource.get(pool.resource_name or "", {}).items()
            if node in pool.allocatable_by_node
        }
        if not touched:
            pools.append(pool)
            continue
        moved: dict[str, int] = dict(pool.free_by_node)
        for node, qty in touched.items():
            have = moved.get(node, 0)
            moved[node] = max(0, have - qty) if taken else min(pool.allocatable_by_node[node], have + qty)
        free = {node: n for node, n in moved.items() if n > 0}
        holders = dict(pool.holders)
        for node in touched:
            for holder, count in held.get((node, pool.resource_name or ""), {}).items():
                holders[holder] = holders.get(holder, 0) + (count if taken else -count)
        pools.append(
            pool.model_copy(
                update={
                    "free_by_node": free,
                    "free_devices": sum(free.values()),
                    "free_histogram": dict(Counter(free.values())),
                    "holders": {h: n for h, n in sorted(holders.items()) if n > 0},
                }
            )
        )
    return inventory.model_copy(update={"pools": pools})


def _pool(members: list[tuple[_NodeFacts, _Device]], table: AcceleratorTable) -> AcceleratorPool:
    facts0, dev = members[0]
    spec = dev.spec
    rdma = all(f.labels.get("feature.node.kubernetes.io/rdma.available") == "true" for f, _ in members)
    common_taints = [t for t in facts0.taints if all(t in f.taints for f, _ in members)]
    free_by_node = {f.name: d.free for f, d in members if d.free > 0}
    slug = re.sub(r"[^a-z0-9]+", "-", f"{dev.vendor}-{dev.product}".lower()).strip("-")
    suffix = f"{dev.memory_bytes // GIB}gib" if dev.vendor == "cpu" else f"x{dev.count}"
    name = f"{slug}-{suffix}"
    return AcceleratorPool(
        name=name,
        vendor=dev.vendor,
        product=dev.product,
        known=dev.known,
        unknown_reason=dev.unknown_reason,
        resource_name=dev.resource_name,
        memory_bytes=dev.memory_bytes,
        memory_source=dev.memory_source,
        devices_per_node=dev.count,
        node_names=[f.name for f, _ in members],
        total_devices=sum(d.count for _, d in members),
        free_devices=sum(free_by_node.values()),
        free_by_node=free_by_node,
        allocatable_by_node={f.name: d.allocatable for f, d in members if f.schedulable and d.allocatable > 0},
        free_histogram=dict(Counter(free_by_node.values())),
        compute_capability=dev.compute_capability,
        family=spec.family if spec else None,
        interconnect=("pcie" if dev.mig else spec.interconnect)
        if spec
        else ("host" if dev.vendor == "cpu" else "unknown"),
        rdma=rdma,
        collective=dev.collective,
        collective_env=dev.collective_env,
        precisions=dev.precisions,
        preferred_precisions=dev.preferred,
        mig=dev.mig,
        max_tensor_parallel=1 if dev.mig or dev.vendor == "cpu" else None,
        peak_tflops_bf16=spec.peak_tflops_bf16 if spec else None,
        peak_tflops_fp16=spec.peak_tflops_fp16 if spec else None,
        peak_tops_int8=spec.peak_tops_int8 if spec else None,
        watts=spec.watts if spec else None,
        soc_version=spec.soc_version if spec else None,
        node_selector=dev.selector,
        taints=common_taints,
        raw_labels=dev.raw_labels,
    )
