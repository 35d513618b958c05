"""The reconciler of a ModelDeployment, split by job: `reconciler` (place, plan, render, act, status) with
`snapshots`, `apply`, `conversion`, `rollout`, `karmada_mode` and `deletion`."""

from autoglm.shell.reconcile.reconciler import Reconciler
from autoglm.shell.reconcile.request import (
    ARTIFACT_FINALIZER,
    PROPAGATION_FINALIZER,
    DeferredApplyStuck,
    ObjectGone,
    Outcome,
)

__all__ = [
    "ARTIFACT_FINALIZER",
    "PROPAGATION_FINALIZER",
    "DeferredApplyStuck",
    "ObjectGone",
    "Outcome",
    "Reconciler",
]
