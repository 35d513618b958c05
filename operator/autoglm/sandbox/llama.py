"""A real OpenAI-compatible backend for the gateway's tests: llama.cpp's server (PyPI `llama-cpp-python[server]`),
built from source once into its own virtual environment in the sandbox cache, run on 127.0.0.1 with a model file
(tests write a tiny GGUF with random weights). Fake pods run no containers: this process stands for a member's
serving pods, linked to the gateway explicitly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from autoglm.sandbox.build import SandboxError, cache_dir

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
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llama-", dir=target.parent))
    try:
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
        if target.exists():
            shutil.rmtree(target)
        # Renamed once built: the venv's scripts keep the staging path in their first line, so the interpreter
        # is only ever called by its full path (python -m ...), which does not depend on it.
        staging.rename(target)
        (target / ".complete").write_text(LLAMA_CPP_PYTHON + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def serve(model: Path, port: int, log: Path, context: int = 512) -> subprocess.Popen[bytes]:
    """Start llama.cpp's OpenAI-compatible server on 127.0.0.1:port and return once it answers /v1/models."""
    command = [str(python()), "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(context), "--n_threads", "1"]  # fmt: skip
    out = log.open("wb")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SandboxError(f"llama.cpp's server exited with {proc.returncode}: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SandboxError(f"llama.cpp's server did not answer on port {port} within 60 s: see {log}")
