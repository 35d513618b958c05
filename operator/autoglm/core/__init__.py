"""The functional core: pure functions over pydantic models (hardware, models, backends, planner, placement,
render, status). Imports only autoglm.api and itself: never a Kubernetes client, kopf or the sandbox."""
