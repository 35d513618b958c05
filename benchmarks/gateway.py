"""The gateway's overhead, side by side in one run: the same streamed chat requests to llama.cpp's server direct,
through nginx (a reverse proxy with buffering off, the existing-proxy peer) and through `autoglm gateway`.

    python benchmarks/gateway.py [--concurrency 1 16 64] [--requests 96] [--rounds 3] [--max-tokens 8]

One llama.cpp server (a tiny random-weight GGUF, one thread) is the backend of all three. For each concurrency,
rounds alternate the targets (direct, nginx, gateway, in a rotating order) so that the machine's noise falls on
all of them alike; each request streams a chat completion and its latency (to the last byte) and time to first
token are recorded; throughput is completed requests per second of the batch. Printed: p50/p99 per target, what
nginx and the gateway add at p50 and p99, and the throughput lost against direct. Goal: the gateway adds
<= 1 ms at p50 and loses <= 5% throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from autoglm.sandbox import llama
from autoglm.sandbox.cluster import free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoglm.sandbox.tiny_model import write_tiny_llama  # noqa: E402
from reconcile_scale import percentile  # noqa: E402

NGINX = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def one(session: aiohttp.ClientSession, url: str, body: bytes, into: Samples) -> None:
    started = time.perf_counter()
    first = None
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            if response.status != 200:
                into.errors += 1
                await response.read()
                return
            async for _ in response.content.iter_any():
                if first is None:
                    first = time.perf_counter()
    except aiohttp.ClientError:
        into.errors += 1
        return
    done = time.perf_counter()
    into.latency.append(done - started)
    into.ttft.append((first or done) - started)
    into.requests += 1


async def batch(url: str, concurrency: int, requests: int, max_tokens: int, into: Samples) -> None:
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
                       "max_tokens": max_tokens, "stream": True}).encode()  # fmt: skip
    queue = list(range(requests))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await one(session, url, body, Samples())  # warm the connection pool, not counted

        async def worker() -> None:
            while queue:
                queue.pop()
                await one(session, url, body, into)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        into.seconds += time.perf_counter() - started


def start_targets(folder: Path, pin: bool) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    """The backend, nginx and the gateway. With `pin`, the backend gets a core of its own and everything else
    (this load generator, nginx, the gateway) the others: a child inherits its parent's CPUs, so this process
    narrows its own before each start."""
    llama.build()
    model = write_tiny_llama(folder / "tiny.gguf")
    backend = free_port()
    cpus = sorted(os.sched_getaffinity(0))
    if pin:
        os.sched_setaffinity(0, cpus[-1:])
    procs = [llama.serve(model, backend, folder / "llama.log")]
    if pin:
        os.sched_setaffinity(0, cpus[:-1])
    nginx_port, gateway_port = free_port(), free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is not None:  # the existing-proxy peer, where it is installed (apt-get install nginx-light)
        conf = folder / "nginx.conf"
        conf.write_text(NGINX.format(dir=folder, backend=backend, port=nginx_port))
        procs.append(subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder)], stderr=subprocess.DEVNULL))
    log = folder / "gateway.log"
    command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "gateway", "--allow-anonymous",
               "--host", "127.0.0.1", "--port", str(gateway_port),
               f"--backend=tiny=http://127.0.0.1:{backend}"]  # fmt: skip
    procs.append(subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT))
    urls = {
        "direct": f"http://127.0.0.1:{backend}",
        "nginx": f"http://127.0.0.1:{nginx_port}",
        "gateway": f"http://127.0.0.1:{gateway_port}",
    }
    if nginx is None:
        del urls["nginx"]
        print("nginx not found: comparing with direct only (apt-get install nginx-light adds the peer)")
    else:
        wait_until("nginx", lambda: http_ok(urls["nginx"] + "/v1/models"), 15)
    wait_until("the gateway", lambda: http_ok(urls["gateway"] + "/healthz"), 30, log)
    return urls, procs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=96, help="Requests per target per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=len(os.sched_getaffinity(0)) > 1,
        help="The backend on a core of its own, as a model server has its own node (default where there are two).",
    )
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="autoglm-gateway-bench-") as tmp:
        urls, procs = start_targets(Path(tmp), args.pin)
        try:
            results: dict[tuple[int, str], Samples] = {}
            for concurrency in args.concurrency:
                order = list(urls)
                for round_ in range(args.rounds):
                    shift = round_ % len(order)
                    for name in order[shift:] + order[:shift]:
                        samples = results.setdefault((concurrency, name), Samples())
                        url = urls[name] + "/v1/chat/completions"
                        asyncio.run(batch(url, concurrency, args.requests, args.max_tokens, samples))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    cpus = "the backend on a core of its own" if args.pin else "all sharing every core"
    table = Table(title=f"Streamed chat completions, {args.max_tokens} tokens, llama.cpp tiny GGUF, {cpus} (ms; req/s)")
    for column in ("streams", "target", "requests", "errors", "p50", "p99", "TTFT p50", "added p50", "added p99",
                   "req/s", "throughput vs direct"):  # fmt: skip
        table.add_column(column, justify="right")
    for concurrency in args.concurrency:
        direct = results[(concurrency, "direct")]
        for name in urls:
            s = results[(concurrency, name)]
            p50, p99 = statistics.median(s.latency), percentile(s.latency, 0.99)
            added = (
                ("", "")
                if name == "direct"
                else (
                    ms(p50 - statistics.median(direct.latency)),
                    ms(p99 - percentile(direct.latency, 0.99)),
                )
            )
            change = "" if name == "direct" else f"{(s.throughput / direct.throughput - 1) * 100:+.1f}%"
            table.add_row(str(concurrency), name, str(s.requests), str(s.errors), ms(p50), ms(p99),
                          ms(statistics.median(s.ttft)), *added, f"{s.throughput:.1f}", change)  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
