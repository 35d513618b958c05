"""What every `autoglm` command shares: the app, its consoles, exit codes, how input problems and refusals
are printed, how data is written as JSON or YAML, and how a cluster is reached."""

from __future__ import annotations

import importlib.util
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.markup import escape

from autoglm.core.images import Images
from autoglm.face.console import console
from autoglm.face.manifest import InputProblem

app = typer.Typer(
    help="open-autoglm: plan, propagate and scale GLM inference on heterogeneous accelerators.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(
    help="Local real control planes (kube-apiserver, etcd, controllers, KWOK fake nodes).", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")

T = TypeVar("T")
DEFAULT_STATE = Path.home() / ".local" / "state" / "open-autoglm" / "sandbox"
EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2


out = console()
err = console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    YAML = "yaml"
    JSON = "json"


class Propagation(StrEnum):
    DIRECT = "direct"
    KARMADA = "karmada"


def refuse(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `error: MESSAGE` in red on stderr; the exit to raise (bad input by default)."""
    # escaped: a message may carry brackets rich would take for markup (an extra's `[gateway]`, a field's `[0]`)
    err.print(f"[red]error[/red]: {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def fail(problems: list[InputProblem]) -> typer.Exit:
    """Every problem of the input (file, field, what is wrong), then exit 2."""
    for problem in problems:
        refuse(str(problem))
    return typer.Exit(EXIT_BAD_INPUT)


# pyproject's extras beyond the operator, each with the top-level modules that show it is installed.
EXTRAS = {
    "gateway": ("aiohttp", "grpc", "google.protobuf", "paho", "opentelemetry"),
    "sandbox": ("cryptography", "gguf"),
}


def missing_extras(*extras: str) -> list[str]:
    """Which of `extras` (EXTRAS' keys) this environment lacks a module of."""

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            return False

    return [extra for extra in extras if not all(installed(module) for module in EXTRAS[extra])]


def install_hint(extras: list[str]) -> str:
    return f"pip install 'open-autoglm[{','.join(extras)}]'"


def require_extras(command: str, *extras: str) -> None:
    """Refuse `autoglm COMMAND` where its extras are not installed, saying how to get them (the operator's image
    installs the operator alone)."""
    missing = missing_extras(*extras)
    if missing:
        raise refuse(f"`autoglm {command}` needs the {' and '.join(missing)} extra: {install_hint(missing)}", 1)


def emit(data: Any, output: Output) -> None:
    """`data` on stdout as JSON or YAML (the -o of every command that prints objects)."""
    typer.echo(json.dumps(data, indent=2) if output is Output.JSON else yaml.safe_dump(data, sort_keys=False))


def cluster_api(kubeconfig: Path | None) -> Any:
    """The one rule every command reaches a cluster by: the kubeconfig given, else the pod's ServiceAccount, else
    the default kubeconfig (shell.kubeconfig.client_configuration). A kubernetes ApiClient."""
    from kubernetes import client

    from autoglm.shell.kubeconfig import client_configuration

    return client.ApiClient(client_configuration(str(kubeconfig) if kubeconfig else None))


def labels_arg(value: str) -> tuple[str, dict[str, str]]:
    name, sep, pairs = value.partition("=")
    labels = dict(pair.partition("=")[::2] for pair in pairs.split(",") if pair)
    if not sep or not name or not labels or any(not k or not v for k, v in labels.items()):
        raise typer.BadParameter(f"expected NAME=key=value[,key=value...], got {value!r}")
    return name, labels


# The operator's image settings, shared by `run` (which renders with them) and `render` (which shows the result).
HelperImage = Annotated[
    str,
    typer.Option(
        "--helper-image",
        envvar="AUTOGLM_HELPER_IMAGE",
        help="Image with a POSIX shell for the operator's own containers (waiting for a conversion's artifact, "
        "removing released ones).",
    ),
]

ImageRegistry = Annotated[
    str,
    typer.Option(
        "--image-registry",
        envvar="AUTOGLM_IMAGE_REGISTRY",
        help="Pull every image the operator renders (serving, conversion, helper) from this mirror, keeping each "
        "image's path and tag: vllm/vllm-openai:v0.11.0 becomes MIRROR/vllm/vllm-openai:v0.11.0.",
    ),
]


def images_from(helper_image: str, image_registry: str) -> Images:
    try:
        return Images(helper_image, image_registry)
    except ValueError as exc:
        raise fail([InputProblem("command line", "--image-registry/--helper-image", str(exc))]) from None


def cluster_arg(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise typer.BadParameter(f"expected NAME=NODES.yaml, got {value!r}")
    return name, Path(path)
