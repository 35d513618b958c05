"""`autoglm probe`: the node-probe agent the chart runs as a DaemonSet. It runs the accelerator tools found on
the node (nvidia-smi, npu-smi, hl-smi, cnmon), reads /proc/cpuinfo, and writes autoglm.io/accelerator.* and
autoglm.io/cpu.* labels on its own Node, which the operator's inventory reads beside the vendors' labels. Nothing
found: no accelerator labels (stale ones removed) and a log line. Errors are logged and retried next round: the
agent never exits on them, so its pod never crash-loops."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from autoglm.core.probe import CPU_PREFIX, PREFIX, Accelerators, ascend, cambricon, cpu_labels, gaudi, nvidia

logger = logging.getLogger("autoglm.probe")
NVIDIA_QUERY = "index,name,uuid,memory.total,compute_cap,pci.bus_id,driver_version"
TOOL_SECONDS = 30


def _run(argv: list[str]) -> str | None:
    """A tool's output, or None where it is missing or fails (a log line says which)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("%s failed: %s", " ".join(argv), exc)
        return None
    if done.returncode != 0:
        logger.warning("%s exited %d: %s", " ".join(argv), done.returncode, done.stderr.strip()[:200])
        return None
    return done.stdout


def detect(proc: Path = Path("/proc")) -> tuple[list[Accelerators], dict[str, str]]:
    """What this node has: accelerators from the vendors' tools, and the CPU's labels."""
    found = []
    query = _run(["nvidia-smi", f"--query-gpu={NVIDIA_QUERY}", "--format=csv"])
    if query is not None:
        gpus = nvidia(query, _run(["nvidia-smi", "topo", "-m"]) or "")
        if gpus is not None:
            found.append(gpus)
    info = _run(["npu-smi", "info"])
    if info is not None:
        npus = ascend(info, _run(["npu-smi", "info", "-t", "topo"]) or "")
        if npus is not None:
            found.append(npus)
    for tool, parse in (("hl-smi", gaudi), ("cnmon", cambricon)):
        summary = _run([tool])
        devices = parse(summary) if summary is not None else None
        if devices is not None:
            found.append(devices)
    cpuinfo = proc / "cpuinfo"
    cpu = cpu_labels(cpuinfo.read_text()) if cpuinfo.exists() else {}
    return found, cpu


def labels_patch(current: dict[str, str], found: list[Accelerators], cpu: dict[str, str]) -> dict[str, str | None]:
    """The merge patch of the node's labels: what was found, and None for autoglm.io labels no longer true."""
    wanted: dict[str, str] = dict(cpu)
    if found:
        wanted |= max(found, key=lambda a: a.count).labels()  # one kind per node, as the inventory reads it
    stale = {k: None for k in current if k.startswith((PREFIX, CPU_PREFIX)) and k not in wanted}
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    return {**changed, **stale}


def run(
    node: str,
    core: object,
    once: bool,
    interval: float,
    dry_run: bool,
    proc: Path = Path("/proc"),
    echo: Callable[[str], None] = print,
) -> dict[str, str | None]:
    """Probe and label `node` now and every `interval` seconds (once: a single round). Returns the last patch."""
    patch: dict[str, str | None] = {}
    while True:
        try:
            found, cpu = detect(proc)
            if not found:
                logger.info(
                    "no accelerator found on %s (nvidia-smi, npu-smi, hl-smi and cnmon absent or reporting none)", node
                )
            if dry_run:
                patch = labels_patch({}, found, cpu)
                echo("\n".join(f"{k}={v}" for k, v in sorted(patch.items())))
            else:
                current = core.read_node(node).metadata.labels or {}  # type: ignore[attr-defined]
                patch = labels_patch(current, found, cpu)
                if patch:
                    core.patch_node(node, {"metadata": {"labels": patch}})  # type: ignore[attr-defined]
                    logger.info("labelled %s: %s", node, patch)
        except Exception:  # an agent logs and retries: exiting would crash-loop its pod
            logger.exception("probe of %s failed; retrying in %.0f s", node, interval)
        if once:
            return patch
        time.sleep(interval)
