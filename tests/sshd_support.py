"""A real OpenSSH server on 127.0.0.1 for the ssh runner tests, started and stopped by the tests themselves.

Why a real sshd: the ssh runner's value is in what real ssh/scp do (BatchMode, host keys, refused connections,
rejected keys, remote exit statuses), which no fake reproduces. Everything lives in a pytest tmp folder: host key,
client key, authorized_keys, sshd_config, pid file and log. Login is as the current user (root in CI), by key only.
Tests skip, saying why, where OpenSSH is not installed (`make system-deps` installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; its systemd unit creates it, a container has none


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    key: Path  # the client key sshd accepts
    folder: Path
    log: Path

    def cli_args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port), "--user", self.user, "--key", str(self.key)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekd-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def missing_tools() -> str:
    if SSHD is None:
        return ("OpenSSH server not installed (/usr/sbin/sshd missing; "
                "run `make system-deps` or apt-get install openssh-server)")
    gone = [t for t in ("ssh", "scp", "ssh-keygen") if shutil.which(t) is None]
    if gone:
        return f"OpenSSH client tools missing: {', '.join(gone)} (apt-get install openssh-client)"
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            return f"sshd needs {PRIVSEP_DIR} and it cannot be created: {exc.strerror}"
    return ""


def _wait_listening(proc: subprocess.Popen, port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_sshd(folder: Path):
    """Start sshd -D on a free loopback port; returns (Sshd, Popen). Fails (with sshd's log) if it does not come up."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_ed25519")
    client_key = keygen(folder / "client_ed25519")
    authorized = folder / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    user = pwd.getpwuid(os.getuid()).pw_name
    log = folder / "sshd.log"
    for _attempt in range(3):  # another process may grab the free port between free_port() and sshd's bind
        port = free_port()
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {folder / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "Subsystem sftp internal-sftp",  # scp >= 9.0 copies over SFTP
            "MaxStartups 50",
            "LogLevel ERROR",
            "",
        ]))
        with open(log, "ab") as fh:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=fh, stderr=fh,
                                    stdin=subprocess.DEVNULL)
        if _wait_listening(proc, port):
            return Sshd("127.0.0.1", port, user, client_key, folder, log), proc
        stop(proc)
    pytest.fail(f"sshd did not start on 127.0.0.1; its log:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = missing_tools()
    if why:
        pytest.skip(why)
    sshd, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield sshd
    finally:
        stop(proc)
