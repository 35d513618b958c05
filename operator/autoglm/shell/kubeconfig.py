"""Where an operator process finds its cluster: one rule for the operator and the node probe (the gateway, a
process of its own that never imports the shell, keeps the same rule in gateway.discovery)."""

from __future__ import annotations

from kubernetes import client, config


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
