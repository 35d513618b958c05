"""A real Prometheus beside the sandbox clusters: DIR/prometheus/, listening on 127.0.0.1, scraping what is
put in its file service discovery folder, with history that `promtool` backfills from OpenMetrics text."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from autoglm.sandbox.build import PROMETHEUS, SandboxError, binaries
from autoglm.sandbox.cluster import ClusterState, Launcher, free_port, prepare_directory

NAME = "prometheus"
KIND = "prometheus"
SCRAPE_INTERVAL_SECONDS = 1.0
SCRAPE_JOB = "sandbox"  # the job label of everything scraped


def url(state: ClusterState) -> str:
    return f"http://127.0.0.1:{state.ports[NAME]}"


def targets_dir(state: ClusterState) -> Path:
    return Path(state.directory) / "targets"


def data_dir(state: ClusterState) -> Path:
    return Path(state.directory) / "data"


def _config(state: ClusterState, scrape_interval: float) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{scrape_interval:g}s", "evaluation_interval": f"{scrape_interval:g}s"},
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "scrape_interval": f"{scrape_interval:g}s",
                "scrape_timeout": f"{min(scrape_interval, 10):g}s",
                # Targets come and go as files in targets/: Prometheus watches the folder.
                "file_sd_configs": [{"files": [str(targets_dir(state) / "*.json")]}],
            }
        ],
    }


def start_prometheus(
    directory: Path,
    backfill: Sequence[Path] = (),
    scrape_interval: float = SCRAPE_INTERVAL_SECONDS,
    retention: str = "60d",
    timeout: float = 60.0,
) -> ClusterState:
    """Start Prometheus with a fresh data folder into which the OpenMetrics files `backfill` were written as
    blocks first (`promtool tsdb create-blocks-from openmetrics`), so their history is there from the start."""
    bins = binaries(components=(PROMETHEUS,))
    state = prepare_directory(NAME, directory, kind=KIND)
    data = data_dir(state)
    shutil.rmtree(data, ignore_errors=True)  # each start is a fresh history
    data.mkdir(parents=True)
    targets_dir(state).mkdir(exist_ok=True)
    for path in backfill:
        backfill_blocks(bins["promtool"], path, data)
    state.ports = {NAME: free_port()}
    config = Path(state.directory) / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(state, scrape_interval), sort_keys=False))
    launcher = Launcher(state, bins)
    launcher.start(
        NAME,
        [
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{state.ports[NAME]}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        health=f"{url(state)}/-/ready",
    )
    launcher.wait(NAME, timeout)
    return state


def backfill_blocks(promtool: Path, openmetrics: Path, data: Path) -> None:
    """Write an OpenMetrics file (ending in `# EOF`) into TSDB blocks under `data`."""
    done = subprocess.run(
        [str(promtool), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SandboxError(f"promtool could not backfill {openmetrics}: {(done.stderr or done.stdout).strip()[-800:]}")


def set_targets(state: ClusterState, name: str, addresses: Sequence[str], labels: Mapping[str, str]) -> Path:
    """Scrape `addresses` (host:port) with `labels`; replaces the target group `name`."""
    path = targets_dir(state) / f"{name}.json"
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps([{"targets": list(addresses), "labels": dict(labels)}]))
    staging.rename(path)  # atomically: Prometheus never reads half a file
    return path


def remove_targets(state: ClusterState, name: str) -> None:
    (targets_dir(state) / f"{name}.json").unlink(missing_ok=True)


def active_targets(state: ClusterState) -> list[dict[str, Any]]:
    """Prometheus' own view of its targets (health, last scrape), from its HTTP API."""
    with urllib.request.urlopen(f"{url(state)}/api/v1/targets?state=active", timeout=5) as response:
        return list(json.load(response)["data"]["activeTargets"])


def query(state: ClusterState, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query, for tests and the demo (the operator reads through prometheus-api-client)."""
    params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
    with urllib.request.urlopen(f"{url(state)}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
        return list(json.load(r)["data"]["result"])


def openmetrics(families: Mapping[str, Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]]) -> str:
    """OpenMetrics text of gauges for `promtool tsdb create-blocks-from openmetrics`: metric name -> [(labels,
    [(unix seconds, value), ...]), ...]. NaN values are left out (a gap, as a missed scrape leaves)."""
    lines = []
    for name, series in families.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, samples in series:
            label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            selector = f"{name}{{{label_text}}}" if label_text else name
            lines.extend(f"{selector} {value!r} {stamp:.3f}" for stamp, value in samples if value == value)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
