"""An MQTT broker for the gateway's MQTT adapter in tests and the demo: Debian's `mosquitto` (apt-get install
mosquitto), run on 127.0.0.1 with a password file (`mosquitto_passwd`) holding the gateway's own account and the
devices' (name: API key), and no anonymous clients."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import wait_until

INSTALL_HINT = "install Debian's mosquitto (apt-get install mosquitto)"


def available() -> bool:
    return all(shutil.which(tool) or Path("/usr/sbin", tool).exists() for tool in ("mosquitto", "mosquitto_passwd"))


def _tool(name: str) -> str:
    found = shutil.which(name) or (str(Path("/usr/sbin", name)) if Path("/usr/sbin", name).exists() else None)
    if found is None:
        raise SandboxError(f"{name} not found: {INSTALL_HINT}")
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(folder: Path, port: int, users: dict[str, str]) -> subprocess.Popen[bytes]:
    """A broker on 127.0.0.1:port accepting only `users` (name -> password); returns once it listens."""
    folder.mkdir(parents=True, exist_ok=True)
    passwords = folder / "passwords"
    passwords.write_text("")
    for name, password in users.items():
        subprocess.run([_tool("mosquitto_passwd"), "-b", str(passwords), name, password], check=True)
    passwords.chmod(0o600)
    config = folder / "mosquitto.conf"
    config.write_text(
        # `user`: as root it would switch to the mosquitto user, who cannot read this folder's files.
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        "persistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
    )
    log = folder / "mosquitto.out"
    proc = subprocess.Popen([_tool("mosquitto"), "-c", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def up() -> bool:
        if proc.poll() is not None:
            raise SandboxError(f"mosquitto exited with {proc.returncode}: see {log}")
        return _listening(port)

    wait_until(f"mosquitto on port {port}", up, 15, log)
    return proc
