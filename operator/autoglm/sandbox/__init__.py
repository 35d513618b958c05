"""Local real control planes for tests, demos and scale runs: built from the Go module proxy, run on 127.0.0.1.

`build` compiles the pinned upstream programs into a cache; `cluster` starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK per cluster with fake accelerator nodes.
"""
