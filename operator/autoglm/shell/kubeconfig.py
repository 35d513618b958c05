"""Where an operator process finds its cluster: one rule for the operator and the node probe (the gateway, a
process of its own that never imports the shell, keeps the same rule in gateway.discovery)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config

# How long a call to an API server may take: the host's (or Karmada's), and a member's (a heartbeat must say
# "unreachable" soon; the failure threshold does the damping).
DEFAULT_API_TIMEOUT = 30.0
DEFAULT_MEMBER_TIMEOUT = 5.0


def client_configuration(kubeconfig: str | None) -> client.Configuration:
    """The kubeconfig's cluster when one is given, else the pod's ServiceAccount, else the default kubeconfig
    (a process started by hand beside a cluster)."""
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cfg
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


class BoundedApiClient(client.ApiClient):
    """An API client whose every call has a timeout: `request_timeout` unless the call gives its own (a watch
    gives a longer one). Calls made for us by the library (the dynamic client's discovery) are bounded too, so
    no hung API server can hold a reconcile, a worker or the Lease renewal. `user_agent` names this process in
    the API server's audit log."""

    def __init__(self, configuration: client.Configuration, request_timeout: float, user_agent: str | None = None):
        super().__init__(configuration)
        self.request_timeout = request_timeout
        if user_agent:
            self.user_agent = user_agent

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.request_timeout
        return super().call_api(*args, **kwargs)


def user_agent(identity: str) -> str:
    """What every request of this operator process says it is: the package, its version and the identity that
    leader election knows it by."""
    from autoglm import __version__

    return f"autoglm/{__version__} ({identity})"
