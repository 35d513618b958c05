from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from autoglm.api import ModelDeploymentSpec
from autoglm.core.backends import load_default_catalog
from autoglm.core.hardware import Inventory, build_inventory, nodes_from_document

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
NODE_SETS = EXAMPLES / "nodes"


def load_nodes(name: str) -> list[dict[str, Any]]:
    path = NODE_SETS / name if not name.startswith("/") else Path(name)
    return nodes_from_document(yaml.safe_load(path.read_text()))


def inventory_of(*names: str) -> Inventory:
    return build_inventory([n for name in names for n in load_nodes(name)])


def spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(fields)


@pytest.fixture(scope="session")
def catalog() -> list[Any]:
    return load_default_catalog()
