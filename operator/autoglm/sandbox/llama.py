"""A real OpenAI-compatible backend for the gateway's tests: llama.cpp's server (PyPI `llama-cpp-python[server]`),
built from source once into its own virtual environment in the sandbox cache, run on 127.0.0.1 with a model file
(tests write a tiny GGUF with random weights). Fake pods run no containers: this process stands for a member's
serving pods, linked to the gateway explicitly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autoglm.sandbox.build import SandboxError, cache_dir, staged
from autoglm.sandbox.cluster import http_ok, wait_until

LLAMA_CPP_PYTHON = "0.3.36"
# Portable CPU code (no -march=native: the cache may move between machines); no examples or tests.
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF"


def llama_dir() -> Path:
    return cache_dir() / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"


def python() -> Path:
    path = llama_dir() / "bin" / "python"
    if not (llama_dir() / ".complete").exists():
        raise SandboxError(f"llama.cpp's server is not built (expected in {llama_dir()}); run `autoglm sandbox build`")
    return path


def build() -> bool:
    """Build llama-cpp-python[server] from source into a venv in the cache unless it is there; True when built."""
    target = llama_dir()
    if (target / ".complete").exists():
        return False
    # The venv is renamed into place once built: its scripts keep the staging path in their first line, so the
    # interpreter is only ever called by its full path (python -m ...), which does not depend on it.
    with staged(target) as staging:
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, capture_output=True)
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        done = subprocess.run(
            [str(staging / "bin" / "pip"), "install", "--quiet", "--no-binary", "llama-cpp-python",
             f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON}"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise SandboxError(
                f"building llama-cpp-python {LLAMA_CPP_PYTHON} failed (needs cmake and a C++ compiler):\n{tail}"
            )
        (staging / ".complete").write_text(LLAMA_CPP_PYTHON + "\n")
    return True


def serve(model: Path, port: int, log: Path, context: int = 512, host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """Start llama.cpp's OpenAI-compatible server on host:port (a loopback address: 127.0.0.2 and up stand for
    members' load balancers) and return once it answers /v1/models."""
    command = [str(python()), "-m", "llama_cpp.server", "--model", str(model), "--host", host,
               "--port", str(port), "--n_ctx", str(context), "--n_threads", "1",
               # By default a new request cuts off the one being streamed; a serving backend queues them instead.
               "--interrupt_requests", "False"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def answering() -> bool:
        if proc.poll() is not None:
            raise SandboxError(f"llama.cpp's server exited with {proc.returncode}: see {log}")
        return http_ok(f"http://{host}:{port}/v1/models")

    try:
        wait_until(f"llama.cpp's server on port {port}", answering, 60, log)
    except SandboxError:
        proc.kill()
        raise
    return proc
