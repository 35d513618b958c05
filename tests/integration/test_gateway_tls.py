"""`autoglm gateway` with mutual TLS: HTTPS and gRPC over TLS with its serving certificate, and only callers
presenting a certificate of the client CA get through, on both protocols; the API key is still required."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoglm.sandbox.cluster import free_port, wait_until
from autoglm.sandbox.pki import CertificateAuthority, Credential

KEY = "tls-test-key"


@dataclass
class Secured:
    https: str
    grpc: str
    ca: Path
    client: Credential
    stranger: Credential  # signed by another CA


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("gateway-tls")
    ca = CertificateAuthority(tmp / "ca", "autoglm-gateway-ca")
    server = ca.issue("gateway", "gateway", dns_names=("localhost",), ips=("127.0.0.1",), server=True)
    client = ca.issue("app", "app")
    stranger = CertificateAuthority(tmp / "other", "someone-else").issue("stranger", "stranger")
    (tmp / "keys.yaml").write_text(f"- name: app\n  key: {KEY}\n")
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "gateway",
               "--backend=tiny=http://127.0.0.1:9", "--api-keys", str(tmp / "keys.yaml"), "--host", "127.0.0.1",
               "--port", str(port), "--grpc-port", str(grpc_port), "--tls-cert", str(server.cert),
               "--tls-key", str(server.key), "--client-ca", str(ca.cert_path)]  # fmt: skip
    log = tmp / "gateway.log"
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    found = Secured(f"https://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", ca.cert_path, client, stranger)

    def up() -> bool:
        try:
            return _get(found, found.client)[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    wait_until("the gateway over mutual TLS", up, 30, log)
    try:
        yield found
    finally:
        proc.terminate()
        proc.wait(10)


def _get(secured: Secured, cert: Credential | None, key: str | None = KEY) -> tuple[int, dict[str, object]]:
    context = ssl.create_default_context(cafile=str(secured.ca))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(secured.https + "/v1/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_https_admits_only_callers_with_a_certificate_of_the_client_ca(secured: Secured) -> None:
    status, body = _get(secured, secured.client)
    assert status == 200 and body["data"] == [{"id": "tiny", "object": "model", "owned_by": "autoglm"}]
    assert _get(secured, secured.client, key=None)[0] == 401  # the certificate does not replace the key
    for cert in (None, secured.stranger):
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _get(secured, cert)


def test_grpc_admits_only_callers_with_a_certificate_of_the_client_ca(secured: Secured) -> None:
    import grpc

    from autoglm.gateway.v1 import inference_pb2, inference_pb2_grpc

    def list_models(cert: Credential | None) -> object:
        pair = (cert.key.read_bytes(), cert.cert.read_bytes()) if cert else (None, None)
        credentials = grpc.ssl_channel_credentials(secured.ca.read_bytes(), *pair)
        with grpc.secure_channel(secured.grpc, credentials) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            return stub.ListModels(
                inference_pb2.ListModelsRequest(), metadata=[("authorization", f"Bearer {KEY}")], timeout=10
            )

    assert [m.name for m in list_models(secured.client).models] == ["tiny"]  # type: ignore[attr-defined]
    for cert in (None, secured.stranger):
        with pytest.raises(grpc.RpcError) as caught:
            list_models(cert)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
