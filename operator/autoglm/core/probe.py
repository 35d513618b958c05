"""What a node's own tools say about its accelerators, as the autoglm.io labels the inventory reads beside the
vendors' labels (operator/autoglm/data/accelerators.yaml), for nodes no vendor labeller covers. Pure: each
vendor's tool output in, labels out; `autoglm probe` (face/probe.py) runs the tools and writes the labels.

Parsed: nvidia-smi (NVIDIA), npu-smi (Huawei Ascend), hl-smi (Intel Gaudi), cnmon (Cambricon), /proc/cpuinfo.
The other vendors' tools (xpu-smi, bm-smi, amd-smi) are not run yet: no recorded output of them was found to
test a parser on, and such a node gets no accelerator labels from the probe."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace

PREFIX = "autoglm.io/accelerator."
CPU_PREFIX = "autoglm.io/cpu."
# Flags of /proc/cpuinfo that change what llama.cpp runs fast, under their Node Feature Discovery names.
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_bf16": "AVX512BF16", "avx512_vnni": "AVX512VNNI",
             "amx_bf16": "AMXBF16", "amx_int8": "AMXINT8"}  # fmt: skip


@dataclass(frozen=True)
class Accelerators:
    """One kind of accelerator found on a node."""

    vendor: str
    product: str
    count: int
    memory_mib: int | None = None
    compute_capability: str | None = None
    interconnect: str | None = None

    def labels(self) -> dict[str, str]:
        labels = {
            PREFIX + "vendor": self.vendor,
            PREFIX + "product": label_value(self.product),
            PREFIX + "count": str(self.count),
        }
        if self.memory_mib is not None:
            labels[PREFIX + "memory-mib"] = str(self.memory_mib)
        if self.compute_capability is not None:
            labels[PREFIX + "compute-capability"] = self.compute_capability
        if self.interconnect is not None:
            labels[PREFIX + "interconnect"] = self.interconnect
        return labels


def label_value(text: str) -> str:
    """A valid label value: GPU Feature Discovery's form (spaces to dashes), other characters dropped, 63 at most."""
    value = re.sub(r"[^A-Za-z0-9._-]", "", re.sub(r"\s+", "-", text.strip()))
    return value[:63].strip("-_.")


def nvidia(query_csv: str, topology: str = "") -> Accelerators | None:
    """`nvidia-smi --query-gpu=index,name,uuid,memory.total,compute_cap,pci.bus_id,driver_version
    --format=csv` (and `nvidia-smi topo -m` for NVLink). Several models on one node: the most numerous."""
    rows = [
        {k.strip(): v.strip() for k, v in row.items() if k is not None}
        for row in csv.DictReader(io.StringIO(query_csv.strip()), skipinitialspace=True)
    ]
    rows = [r for r in rows if r.get("name")]
    if not rows:
        return None
    names = [r["name"] for r in rows]
    name = max(set(names), key=names.count)
    chosen = [r for r in rows if r["name"] == name]
    memory = re.match(r"(\d+)", chosen[0].get("memory.total [MiB]", ""))
    cc = chosen[0].get("compute_cap") or None
    linked = re.search(r"\bNV\d+\b", topology) is not None
    return Accelerators(
        vendor="nvidia",
        product=name,
        count=len(chosen),
        memory_mib=int(memory.group(1)) if memory else None,
        compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
        # one GPU has nothing to talk to; several either share NVLink (NV# in the matrix) or go over PCIe
        interconnect=None if len(chosen) == 1 or not topology else ("nvlink" if linked else "pcie"),
    )


_NPU_ROW = re.compile(r"^\|\s*(\d+)\s+([A-Za-z0-9][\w.-]*)\s*\|\s*(\w+)\s*\|")
_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")


def ascend(info: str, topology: str = "") -> Accelerators | None:
    """`npu-smi info` (each NPU's row, then its chip row ending in Memory-Usage and HBM-Usage "used / total"
    MB) and `npu-smi info -t topo` (HCCS between NPUs). Products as the Ascend device plugin's chip label
    names them, prefixed: 910B3 -> Ascend910B3."""
    lines = info.splitlines()
    found: list[tuple[str, int | None]] = []
    for i, line in enumerate(lines):
        row = _NPU_ROW.match(line.strip())
        if row is None or i + 1 >= len(lines):
            continue
        usage = [int(total) for _, total in _USAGE.findall(lines[i + 1])]
        # HBM on the 910 series; the 310P has no HBM (0 / 0) and reports its DDR as Memory-Usage
        memory = next((t for t in reversed(usage) if t > 0), None)
        found.append((row.group(2), memory))
    if not found:
        return None
    names = [n for n, _ in found]
    name = max(set(names), key=names.count)
    chosen = [m for n, m in found if n == name]
    linked = "HCCS" in topology
    return Accelerators(
        vendor="huawei",
        product=name if name.lower().startswith("ascend") else f"Ascend{name}",
        count=len(chosen),
        memory_mib=chosen[0],
        interconnect=None if len(chosen) == 1 or not topology else ("hccs" if linked else "pcie"),
    )


_AIP_ROW = re.compile(r"^\|\s*(\d+)\s+(HL-[\w-]+)\s")
_MLU_ROW = re.compile(r"^\|\s*(\d+)\s+\S+\s+(MLU[\w-]*)\s+v[\d.]+\s*\|")
_MIB_PAIR = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")


def _table_devices(summary: str, row: re.Pattern[str]) -> Accelerators | None:
    """The devices of an nvidia-smi-like table: a row per device whose group 2 is its name, then a row whose first
    "used MiB / total MiB" is its memory. Several models on one node: the most numerous (vendor left blank)."""
    lines = summary.splitlines()
    found: list[tuple[str, int | None]] = []
    for i, line in enumerate(lines):
        match = row.match(line.strip())
        if match is None:
            continue
        usage = _MIB_PAIR.search(lines[i + 1]) if i + 1 < len(lines) else None
        found.append((match.group(2), int(usage.group(2)) if usage else None))
    if not found:
        return None
    names = [n for n, _ in found]
    name = max(set(names), key=names.count)
    chosen = [m for n, m in found if n == name]
    return Accelerators(vendor="", product=name, count=len(chosen), memory_mib=chosen[0])


def gaudi(summary: str) -> Accelerators | None:
    """`hl-smi` (its summary table: each AIP's row with its name, e.g. HL-225, then a row ending in
    Memory-Usage "used MiB / total MiB"). Gaudi links its cards by on-chip RoCE ports, which the table does not
    show: the interconnect comes from the accelerator catalog."""
    found = _table_devices(summary, _AIP_ROW)
    return replace(found, vendor="intel-gaudi") if found else None


def cambricon(summary: str) -> Accelerators | None:
    """`cnmon` (its table: each card's row with Card, VF, Name, e.g. MLU370-X8, and Firmware, then a row whose
    first "used MiB/ total MiB" is the device memory; older drivers add the virtual memory after it). Each row is
    one device as the device plugin hands it out, so its memory is what a replica on it gets."""
    found = _table_devices(summary, _MLU_ROW)
    return replace(found, vendor="cambricon") if found else None


def cpu_labels(cpuinfo: str) -> dict[str, str]:
    """The CPU's model and its vector/matrix features from /proc/cpuinfo, as autoglm.io/cpu.* labels."""
    flags: set[str] = set()
    model = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
        elif key.strip() == "model name" and not model:
            model = value.strip()
    labels = {CPU_PREFIX + feature: "true" for flag, feature in CPU_FLAGS.items() if flag in flags}
    if model:
        labels[CPU_PREFIX + "model"] = label_value(model)
    return labels
