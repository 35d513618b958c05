"""What every `autoglm` command shares: the app, its consoles, exit codes, how input problems and refusals
are printed, how data is written as JSON or YAML, and how a cluster is reached."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console

from autoglm.core.images import Images
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

# Piped output keeps whole names (as kubectl does) instead of cutting them to the 80 columns of a pipe.
PIPED_WIDTH = 250
T = TypeVar("T")
DEFAULT_STATE = Path.home() / ".local" / "state" / "open-autoglm" / "sandbox"
EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


out = _console()
err = _console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    YAML = "yaml"
    JSON = "json"


class Propagation(StrEnum):
    DIRECT = "direct"
    KARMADA = "karmada"


def refuse(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `error: MESSAGE` in red on stderr; the exit to raise (bad input by default)."""
    err.print(f"[red]error[/red]: {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def fail(problems: list[InputProblem]) -> typer.Exit:
    """Every problem of the input (file, field, what is wrong), then exit 2."""
    for problem in problems:
        refuse(str(problem))
    return typer.Exit(EXIT_BAD_INPUT)


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
