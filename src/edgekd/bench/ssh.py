"""The ssh runner: a Jetson or any Linux board reached with the OpenSSH client.

It copies measure.py, the artifact and the inputs into a fresh folder under the profile's remote_dir, runs the
script with the board's Python (runner.remote_python), parses the JSON it prints and removes the folder again.

Why these choices: `ssh`/`scp` are started with argument lists (no local shell); the one string the remote shell
parses is built with shlex.quote from fixed parts and quoted paths. BatchMode=yes makes a missing or wrong key fail
at once instead of prompting; host keys are accepted on first use into a private known_hosts under the run folder,
so a user's ~/.ssh/known_hosts is never touched and a changed host key still fails.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError

from .runner import BenchRequest, last_line, measure_with_python, parse_measure_output

_SAFE_HOST = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
# remote_dir reaches the remote shell through scp's TARGET:PATH (legacy scp protocol, OpenSSH < 9), so it is limited
# to characters no shell treats specially; file names inside it are sent in the scp/sftp protocol, never to a shell.
_SAFE_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9_./+-]*$")

# ssh's own failure messages (exit status 255) -> the one line a user needs.
_SSH_FAILURES = [
    ("Connection refused", "connection refused (is sshd running on that port?)"),
    ("Connection timed out", "connection timed out"),
    ("timed out", "connection timed out"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network is unreachable"),
    ("Could not resolve hostname", "unknown host name"),
    ("Name or service not known", "unknown host name"),
    ("Permission denied", "authentication failed: the key was not accepted"),
    ("Host key verification failed", "host key verification failed (the host key changed)"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "host key verification failed (the host key changed)"),
    ("Too many authentication failures", "authentication failed: too many keys offered"),
    ("Connection closed", "the server closed the connection"),
    ("Connection reset", "the server reset the connection"),
]


def _ssh_config_path(path: Path) -> str:
    """A path as an ssh -o value: ssh splits such values on blanks and expands %-tokens, so quote and escape."""
    text = str(Path(path).resolve())
    if '"' in text:
        raise EdgekdError("the artifacts folder path contains a double quote, which ssh options cannot carry",
                          file=text)
    return '"' + text.replace("%", "%%") + '"'


@dataclass
class SshRunner:
    host: str
    known_hosts: Path  # private known_hosts file (under the run folder)
    user: str | None = None
    port: int = 22
    key: str | None = None
    remote_dir: str = "/tmp/edgekd"
    remote_python: str = "python3"
    connect_timeout_s: int = 10
    timeout_s: int = 900
    name: str = "ssh"
    binary: str | None = None  # trtexec on the board (runner.binary); None: JetPack's /usr/src/tensorrt/bin/trtexec
    _session: str | None = field(default=None, repr=False)
    python_argv: list[str] = field(default_factory=list, init=False, repr=False)  # remote_python, split

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or not _SAFE_HOST.match(self.host):
            raise EdgekdError("not a valid host name or address", key="runner.host", hint=repr(self.host))
        if self.user is not None and not _SAFE_USER.match(self.user):
            raise EdgekdError("not a valid user name", key="runner.user", hint=repr(self.user))
        if not 1 <= int(self.port) <= 65535:
            raise EdgekdError("port out of range 1..65535", key="runner.port", hint=repr(self.port))
        if self.key is not None and not Path(self.key).expanduser().is_file():
            raise EdgekdError("ssh key file not found", file=str(self.key), key="runner.key")
        if not _SAFE_REMOTE_DIR.match(self.remote_dir) or "/../" in f"{self.remote_dir}/":
            raise EdgekdError("remote_dir must be an absolute path of letters, digits and _ . / + - (no ..)",
                              key="runner.remote_dir", hint=repr(self.remote_dir))
        try:
            self.python_argv = shlex.split(self.remote_python)
        except ValueError as exc:
            raise EdgekdError(f"remote_python is not a valid command line: {exc}", key="runner.remote_python",
                              hint=repr(self.remote_python)) from exc
        if not self.python_argv:
            raise EdgekdError("remote_python is empty", key="runner.remote_python", hint="e.g. python3")
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise EdgekdError(f"the OpenSSH client ({tool}) is not installed",
                                  hint="apt-get install openssh-client")

    # ------------------------------------------------------------------------------------------ commands
    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def describe(self) -> str:
        return f"ssh {self.target}:{self.port} ({self.remote_python})"

    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout_s)}",
                "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={_ssh_config_path(self.known_hosts)}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=15"]
        if self.key:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(Path(self.key).expanduser())]
        return opts

    def ssh_command(self, remote_argv: list[str]) -> list[str]:
        """ssh argv; the remote command is one string of individually quoted words (the remote shell parses it)."""
        return ["ssh", *self._options(), "-p", str(int(self.port)), "--", self.target, shlex.join(remote_argv)]

    def _scp_target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.user}@{host}" if self.user else host

    def scp_command(self, sources: list[str], dest: str) -> list[str]:
        """scp argv (sources and dest as scp spells them: local paths or TARGET:PATH)."""
        return ["scp", "-q", *self._options(), "-P", str(int(self.port)), "--", *sources, dest]

    def _call(self, argv: list[str], what: str, timeout_s: int | None = None) -> subprocess.CompletedProcess:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s or self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise EdgekdError(f"ssh {self.target}:{self.port}: {what} did not finish in "
                              f"{timeout_s or self.timeout_s} s") from exc
        if proc.returncode == 255:
            hint = self._hint(proc.stderr)
            raise EdgekdError(f"ssh {self.target}:{self.port}: {self._explain(proc.stderr)}"
                              + (f" ({hint})" if hint else ""))
        return proc

    def _explain(self, stderr: str) -> str:
        for needle, message in _SSH_FAILURES:
            if needle in stderr:
                return message
        return last_line(stderr) or "ssh failed (exit 255)"

    def _hint(self, stderr: str) -> str:
        if "Permission denied" in stderr:
            return f"check runner.key / --key ({self.key or 'ssh default keys'}) and runner.user / --user"
        if "refused" in stderr or "timed out" in stderr:
            return "check runner.host / --host and runner.port / --port"
        return ""

    # ------------------------------------------------------------------------------------------ protocol
    def push(self, files: list[Path]) -> list[str]:
        """Create a fresh folder under remote_dir and copy the files into it; returns their remote paths."""
        for f in files:
            if not Path(f).is_file():
                raise EdgekdError("file not found", file=str(f))
        names = [Path(f).name for f in files]
        if len(set(names)) != len(names):
            raise EdgekdError(f"files to push share a name: {names}")
        session = f"{self.remote_dir.rstrip('/')}/run-{uuid.uuid4().hex[:12]}"
        proc = self._call(self.ssh_command(["mkdir", "-p", "--", session]), "mkdir", self.connect_timeout_s + 30)
        if proc.returncode != 0:
            raise EdgekdError(f"ssh {self.target}: cannot create {session}: {last_line(proc.stderr)}")
        self._session = session
        proc = self._call(self.scp_command([str(Path(f).resolve()) for f in files], f"{self._scp_target()}:{session}/"), "copy")
        if proc.returncode != 0:
            raise EdgekdError(f"scp to {self.target}:{session} failed: {last_line(proc.stderr)}")
        return [f"{session}/{n}" for n in names]

    def run(self, args: list[str]) -> dict:
        """Run remote_python (split like a shell would, each word quoted again) with the script's arguments."""
        proc = self._call(self.ssh_command([*self.python_argv, *args]), "benchmark")
        where = f"ssh {self.target}:{self.port}"
        if proc.returncode in (126, 127):  # the remote shell: not found / not executable
            what = "not found" if proc.returncode == 127 else "not executable"
            raise EdgekdError(f"{where}: remote python {self.remote_python!r} {what} "
                              "(set runner.remote_python or --remote-python)")
        return parse_measure_output(proc.stdout, proc.stderr, proc.returncode, f"{where} ({self.remote_python})")

    def collect(self, remote: str, local: Path) -> Path:
        if self._session is None or not remote.startswith(self._session + "/"):
            raise EdgekdError(f"can only collect files of this run's remote folder, not {remote!r}")
        proc = self._call(self.scp_command([f"{self._scp_target()}:{remote}"], str(local)), "collect")
        if proc.returncode != 0:
            raise EdgekdError(f"scp from {self.target}:{remote} failed: {last_line(proc.stderr)}")
        return Path(local)

    def cleanup(self) -> None:
        """Remove this run's remote folder (only it: a fresh uuid-named folder this runner created)."""
        if self._session is None:
            return
        session, self._session = self._session, None
        try:
            self._call(self.ssh_command(["rm", "-rf", "--", session]), "cleanup", self.connect_timeout_s + 30)
        except EdgekdError:
            pass  # the measurement (or its error) matters more than a leftover folder in /tmp on the board

    def measure(self, request: BenchRequest) -> dict:
        if request.runtime == "tensorrt":  # engines and Q/DQ ONNX for TensorRT are timed by trtexec on the board
            from .trtexec import measure_with_trtexec

            return measure_with_trtexec(self, request)
        return measure_with_python(self, request)
