"""open-autoglm: plan, propagate and scale GLM-family inference across heterogeneous accelerators."""

__version__ = "0.1.0"

API_GROUP = "autoglm.io"
API_VERSION = "v1alpha1"
