"""The demo's front door: one request of each protocol (OpenAI HTTP, the unified schema over HTTP, gRPC, MQTT)
through `autoglm gateway` to a ModelDeployment served by two members, and the answers printed.

The sandbox's pods run no containers, so each member's serving pods are stood in for by a real llama.cpp server
(a tiny random-weight model: its text is noise) on a loopback address, given to that member's LoadBalancer
Service as its address, as a cloud's load-balancer controller would. The gateway routes from the
ModelDeployment's status (`--from-cluster`: the host cluster, or the Karmada API server), where the operator
reports each member's endpoint. MQTT goes through Debian's mosquitto when it is installed."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.table import Table

from autoglm import API_GROUP, API_VERSION
from autoglm.sandbox import llama, mosquitto
from autoglm.sandbox.cluster import ClusterState, free_port, http_ok, wait_until

# Member -> the loopback address its load balancer gets (the llama.cpp server standing for its pods).
ADDRESSES = {"gpu": "127.0.0.2", "ascend": "127.0.0.3"}
DEMO_KEY: dict[str, str | int] = {
    "name": "demo", "key": "demo-key-not-a-secret", "ratePerSecond": 20, "burst": 40, "maxInFlight": 8,
}  # fmt: skip
QUESTION = "What is GLM?"


def expose(spec: dict[str, Any], port: int) -> dict[str, Any]:
    """The deployment's spec with LoadBalancer Services on `port`, for the gateway to reach each member."""
    return {**spec, "expose": {"service": {"type": "LoadBalancer", "port": port}}}


def _give_addresses(members: dict[str, ClusterState], namespace: str, name: str, timeout: float) -> None:
    for member, address in ADDRESSES.items():
        core = client.CoreV1Api(members[member].api_client())

        def exists(core: client.CoreV1Api = core) -> bool:
            try:
                core.read_namespaced_service(name, namespace)
                return True
            except client.ApiException:
                return False

        wait_until(f"{name}'s Service on {member}", exists, timeout)
        status = {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}}
        core.patch_namespaced_service_status(name, namespace, status)


def _endpoints(host: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    md: Any = client.CustomObjectsApi(host).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "modeldeployments", name
    )
    return {c["name"]: c["endpoint"] for c in (md.get("status") or {}).get("clusters") or [] if c.get("endpoint")}


def _post(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DEMO_KEY['key']}"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()), response.headers.get("X-Autoglm-Upstream", "")


def _member(upstream: str) -> str:
    """The member behind an X-Autoglm-Upstream (member/URL; static routes name no member): by its address."""
    return next((m for m, a in ADDRESSES.items() if f"//{a}:" in upstream), upstream)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:40] + ("…" if len(flat) > 40 else "")


def front_door(
    host: client.ApiClient,
    kubeconfig: Path,
    members: dict[str, ClusterState],
    namespace: str,
    name: str,
    port: int,
    console: Console,
    timeout: float,
) -> bool:
    """Serve `name` (exposed on `port`) through the gateway and send one request per protocol; False when one
    failed. Skipped, with how to enable it, when llama.cpp's server is not built."""
    if not (llama.llama_dir() / ".complete").exists():
        console.print("the front door: skipped (llama.cpp's server is not built; `autoglm sandbox build` builds it)")
        return True
    from autoglm.sandbox.tiny_model import write_tiny_llama

    _give_addresses(members, namespace, name, timeout)
    with tempfile.TemporaryDirectory(prefix="autoglm-demo-gateway-") as tmp:
        folder = Path(tmp)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            model = write_tiny_llama(folder / "tiny.gguf")
            for member, address in ADDRESSES.items():
                processes.append(llama.serve(model, port, folder / f"{member}.log", host=address))
            wanted = {m: f"http://{a}:{port}" for m, a in ADDRESSES.items()}
            wait_until("the members' endpoints in status", lambda: _endpoints(host, namespace, name) == wanted,
                       timeout)  # fmt: skip
            routes = ["--from-cluster", "--kubeconfig", str(kubeconfig), "-n", namespace]
            (folder / "keys.yaml").write_text(yaml.safe_dump([DEMO_KEY]))
            http_port, grpc_port = free_port(), free_port()
            command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "gateway", *routes,
                       "--host", "127.0.0.1", "--port", str(http_port), "--grpc-port", str(grpc_port),
                       "--api-keys", str(folder / "keys.yaml")]  # fmt: skip
            broker_port = None
            if mosquitto.available():
                broker_port = free_port()
                users = {"gateway": "demo-gateway", str(DEMO_KEY["name"]): str(DEMO_KEY["key"])}
                processes.append(mosquitto.start(folder / "mosquitto", broker_port, users))
                command += ["--mqtt-broker", f"127.0.0.1:{broker_port}", "--mqtt-username", "gateway",
                            "--mqtt-password", "demo-gateway"]  # fmt: skip
            log = folder / "gateway.log"
            processes.append(subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT))
            url = f"http://127.0.0.1:{http_port}"
            wait_until("the gateway", lambda: http_ok(url + "/healthz"), 30, log)

            def routed() -> bool:
                with urllib.request.urlopen(urllib.request.Request(url + "/v1/models", headers={
                        "Authorization": f"Bearer {DEMO_KEY['key']}"}), timeout=5) as response:  # fmt: skip
                    return any(m["id"].split("@")[0] == name for m in json.loads(response.read())["data"])

            wait_until(f"the gateway's route to {name}", routed, timeout, log)
            return _ask_each_protocol(url, f"127.0.0.1:{grpc_port}", broker_port, name, console)
        finally:
            for proc in reversed(processes):
                proc.terminate()
                proc.wait(10)


def _ask_each_protocol(url: str, grpc_address: str, broker_port: int | None, name: str, console: Console) -> bool:
    from autoglm.gateway.clients import MqttDevice, grpc_infer

    unified = {"model_name": name, "data": {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 12}}
    table = Table(title=f"one front door: {QUESTION!r} to {name} (llama.cpp with random weights: the text is noise)")
    for column in ("protocol", "answered by", "status", "tokens", "text"):
        table.add_column(column)
    ok = True
    chat = {"model": name, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 12}
    answer, upstream = _post(url + "/v1/chat/completions", chat)
    tokens, text = answer["usage"]["completion_tokens"], answer["choices"][0]["message"]["content"]
    table.add_row("HTTP OpenAI /v1/chat/completions", _member(upstream), "200", str(tokens), _short(text))
    answer, upstream = _post(url + "/v1/infer", unified)
    tokens, text = answer["result"]["usage"].get("completion_tokens", ""), answer["result"]["text"]
    status = str(answer["status_code"])
    table.add_row("HTTP unified /v1/infer", _member(upstream), status, str(tokens), _short(text))
    reply = grpc_infer(grpc_address, unified, str(DEMO_KEY["key"]))
    table.add_row("gRPC autoglm.gateway.v1.Inference/Infer", "", str(reply.status_code),
                  str(reply.result.usage.completion_tokens), _short(reply.result.text))  # fmt: skip
    if broker_port is None:
        table.add_row("MQTT", "", "skipped", "", f"no broker: {mosquitto.INSTALL_HINT}")
    else:
        device = MqttDevice("127.0.0.1", broker_port, str(DEMO_KEY["name"]), str(DEMO_KEY["key"]))
        try:
            answer, _ = device.ask(name, unified, str(DEMO_KEY["key"]))
        finally:
            device.close()
        ok = answer["status_code"] == 200
        result = answer.get("result") or {}
        table.add_row(f"MQTT autoglm/v1/{name}/request", "", str(answer["status_code"]),
                      str((result.get("usage") or {}).get("completion_tokens", "")),
                      _short(result.get("text") or answer["message"]))  # fmt: skip
    console.print(table)
    return ok and reply.status_code == 200
