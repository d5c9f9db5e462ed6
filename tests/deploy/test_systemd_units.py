"""docs/deploy.md's systemd units and nginx site, tried as written, without systemd as PID 1.

`systemd-analyze verify` checks the units. Then their ExecStart runs the way systemd would start it: in the
WorkingDirectory, with the environment of the EnvironmentFile (read by systemd's rules) and of Environment=, with
the unit's sandbox (ProtectSystem=strict, PrivateTmp, ProtectHome, ReadWritePaths, RuntimeDirectory,
NoNewPrivileges) rebuilt in a private mount namespace, and NOTIFY_SOCKET on a socket of the test's. What is checked
is what the units promise: the web node notifies READY=1 from its main process, serves, reloads on ExecReload with
new workers under the same master, and stops within TimeoutStopSec leaving nothing behind; the jobs lead and stop
the same way. Only the install paths differ (/srv/myhug/app → this repository and its virtual environment; the blob
folder, the settings file and /run → a temporary folder), and the database is SQLite beside them instead of
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import runpy
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from deploy import cluster
from jobs import tasks
from tests import pg
from tests.deploy.test_deploy_docs import filled_settings, read_by_sh
from tests.jobs.test_runner import wait_for
from tests.smtp import free_port
from workflows.documents import ORPHAN_MIN_AGE

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
# What the doc writes with `cat > /etc/systemd/system/NAME <<'EOF'`, exactly as written.
UNITS = dict(re.findall(r"^cat > /etc/systemd/system/(\S+) <<'EOF'\n(.*?)^EOF$", DOC, re.S | re.M))
WEB, JOBS = "myhug-web@.service", "myhug-jobs.service"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"  # what systemd gives a system service
DEFAULT_TIMEOUT_START = "90s"  # systemd's DefaultTimeoutStartSec: a Type=notify unit not ready by then is killed
HOMES = ("/home", "/root", "/run/user")  # what ProtectHome=true empties
ACCOUNT = {"HOME": "/srv/myhug", "SHELL": "/usr/sbin/nologin"}  # section 2's `adduser`


def install_paths(base: Path) -> dict[str, str]:
    """Where this test installs what the doc puts in /srv and /etc (the virtual environment first: it is inside)."""
    return {
        "/srv/myhug/app/.venv": sys.prefix,
        "/srv/myhug/app": str(ROOT),
        "/srv/myhug/blobs": str(base / "blobs"),
        "/etc/myhug/myhug.env": str(base / "myhug.env"),
    }


def installed(text: str, base: Path) -> str:
    for path, here in install_paths(base).items():
        text = text.replace(path, here)
    return text


# -- reading units and settings files as systemd does ------------------------------------------------------------
class Unit:
    """A unit file's settings (systemd.syntax(7)), its specifiers expanded for one instance (systemd.unit(5));
    without an instance, a template's %i stays as written."""

    def __init__(self, text: str, instance: str | None = None):
        specifiers = {"H": socket.gethostname(), "%": "%", "i": "%i" if instance is None else instance}

        def expand(value: str) -> str:
            def one(match: re.Match) -> str:
                if match.group(1) not in specifiers:
                    raise ValueError(f"specifier %{match.group(1)} is not emulated here: {value}")
                return specifiers[match.group(1)]

            return re.sub(r"%(.)", one, value)

        self.settings: list[tuple[str, str, str]] = []
        section = ""
        for line in text.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            self.settings.append((section, key.strip(), expand(value.strip())))

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [value for s, k, value in self.settings if (s, k) == (section, key) and value]

    def value(self, key: str, default: str | None = None, section: str = "Service") -> str | None:
        values = self.values(key, section)
        return values[-1] if values else default  # a later assignment overrides an earlier one


def seconds(span: str) -> float:
    """A systemd time span ("40", "90s", "2min 30s") in seconds (systemd.time(7))."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    if not parts or re.sub(r"\s|\d|\.|[a-z]", "", span) or any(unit not in units for _n, unit in parts):
        raise ValueError(f"time span not understood: {span!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def read_environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines the way systemd reads an EnvironmentFile= (systemd.exec(5)): lines starting with # or ; are
    comments, the value is trimmed, and `# …` after a value is part of it; a value in double quotes loses them and
    its \\" \\\\ \\$ \\` escapes. What the doc's file does not use (single quotes, backslashes outside double quotes,
    continued lines) is refused rather than guessed."""
    environ = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip(" \t\r")
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = (part.strip(" \t\r") for part in line.split("=", 1))
        quoted = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', value)
        if quoted:
            value = re.sub(r'\\(["\\$`])', r"\1", quoted.group(1))
        elif "\\" in value or value.startswith(("'", '"')):
            raise ValueError(f"{path}:{number}: quoting not emulated here: {line}")
        environ[key] = value
    return environ


def command_line(value: str, environ: dict[str, str]) -> list[str]:
    """An ExecStart=/ExecReload= command: words as systemd splits them, `$NAME` replaced by its words."""
    if value[:1] in set("@-:+!|"):
        raise ValueError(f"command prefix not emulated here: {value}")
    argv: list[str] = []
    for word in shlex.split(value):
        variable = re.fullmatch(r"\$(\w+)", word)
        if variable is None and "$" in word:
            raise ValueError(f"variable in a word not emulated here: {word}")
        argv += environ[variable.group(1)].split() if variable else [word]
    return argv


# -- systemd-analyze verify --------------------------------------------------------------------------------------
def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")


def verify(folder: Path, units: dict[str, str], name: str) -> list[str]:
    """The units written into `folder` (install paths substituted), then what `systemd-analyze verify` says about
    `name` (a template: its instance 8001). It exits 0 on an unknown key or a value it cannot parse, and only warns:
    any line it prints about the unit counts as a complaint."""
    pg.require_service(None if systemd_analyze() else "systemd-analyze is not installed (apt-get install systemd)")
    for unit_name, text in units.items():
        (folder / unit_name).write_text(installed(text, folder))
    (folder / "myhug.env").write_text("MYHUG_ENV=production\n")
    target = folder / name.replace("@.", "@8001.")
    completed = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(target)], capture_output=True, text=True, check=False
    )
    stem = name.split("@")[0].split(".")[0]
    said = [line for line in (completed.stdout + completed.stderr).splitlines() if stem in line]
    return said + ([f"exit status {completed.returncode}"] if completed.returncode else [])


def test_the_doc_writes_the_units_this_file_tries():
    assert {WEB, JOBS} <= set(UNITS)
    assert "--bind 127.0.0.1:%i" in Unit(UNITS[WEB]).value("ExecStart")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_accepts_each_unit_as_written(tmp_path, name):
    assert verify(tmp_path, UNITS, name) == []


@pytest.mark.parametrize(
    ("name", "written", "typo"),
    [
        (WEB, "KillMode=mixed", "KilMode=mixed"),  # a misspelled directive: systemd ignores it and warns
        (WEB, ".venv/bin/gunicorn -c", ".venv/bin/gunicron -c"),  # an ExecStart that does not exist
        (WEB, "Type=notify", "Type=notfy"),  # a value systemd cannot parse: ignored, with a warning
        (JOBS, "TimeoutStopSec=120", "TimeoutStopSec=12O"),
        (JOBS, "[Service]", "[Servce]"),
    ],
)
def test_the_check_catches_a_typo_in_a_unit(tmp_path, name, written, typo):
    assert written in UNITS[name]
    assert verify(tmp_path, {**UNITS, name: UNITS[name].replace(written, typo, 1)}, name) != []


def test_systemd_reads_the_time_spans_as_this_file_does():
    pg.require_service(None if systemd_analyze() else "systemd-analyze is not installed (apt-get install systemd)")
    spans = {Unit(text).value("TimeoutStopSec") for text in UNITS.values()} - {None} | {DEFAULT_TIMEOUT_START}
    for span in spans:
        said = subprocess.run([systemd_analyze(), "timespan", span], capture_output=True, text=True, check=True)
        assert int(re.search(r"(?:μs|us): (\d+)", said.stdout).group(1)) == seconds(span) * 1_000_000  # C: "us"


def test_the_web_unit_waits_for_gunicorns_graceful_stop():
    """systemd kills what is left after TimeoutStopSec: gunicorn must have let its requests finish before."""
    graceful = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["graceful_timeout"]
    assert seconds(Unit(UNITS[WEB]).value("TimeoutStopSec")) > graceful


# -- the settings file ---------------------------------------------------------------------------------------------
def test_systemd_and_sh_read_the_settings_file_alike(tmp_path):
    """The doc's promise: the services (EnvironmentFile=) and `myhug-flask` (sh) get the same settings."""
    env_file = tmp_path / "myhug.env"
    env_file.write_text(filled_settings())
    assert read_environment_file(env_file) == read_by_sh(env_file)


def test_a_comment_after_a_value_is_part_of_it_for_systemd_only(tmp_path):
    env_file = tmp_path / "myhug.env"
    env_file.write_text('MYHUG_LOG_LEVEL=INFO # the default\nMYHUG_MAIL_SENDER="myHUG <myhug@hcuge.ch>"\n')
    assert read_environment_file(env_file) == {
        "MYHUG_LOG_LEVEL": "INFO # the default",
        "MYHUG_MAIL_SENDER": "myHUG <myhug@hcuge.ch>",
    }
    assert read_by_sh(env_file)["MYHUG_LOG_LEVEL"] == "INFO"


# -- the sandbox: the unit's file-system settings, rebuilt in a private mount namespace ---------------------------
SANDBOX = r"""
import ctypes, json, os, re, sys
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
KEPT = {"nosuid": NOSUID, "nodev": NODEV, "noexec": NOEXEC, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}
libc = ctypes.CDLL(None, use_errno=True)

def mount(source, target, fstype, flags, data=None):
    args = [None if a is None else a.encode() for a in (source, target, fstype, data)]
    if libc.mount(args[0], args[1], args[2], flags, args[3]) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), target)

spec, argv = json.loads(sys.argv[1]), sys.argv[2:]
if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS: these mounts are this process's, gone when it ends
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
mount(None, "/", None, REC | PRIVATE)
handles = [(os.open(source, os.O_PATH), target, writable) for source, target, writable in spec["bind"]]
if spec["read_only"]:  # ProtectSystem=strict: everything read-only but the API file systems
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if not re.match(r"/(dev|proc|sys)(/|$)", target):
            flags = sum(KEPT.get(option, 0) for option in fields[5].split(","))
            mount(None, target, None, REMOUNT | BIND | RDONLY | flags)
for target, mode in spec["tmpfs"]:  # PrivateTmp, ProtectHome: empty folders of the process's own
    if os.path.isdir(target):
        mount("tmpfs", target, "tmpfs", NOSUID | NODEV, f"mode={mode}")
for fd, target, writable in handles:  # the folders opened before /tmp was hidden, at their own paths
    os.makedirs(target, exist_ok=True)
    mount(f"/proc/self/fd/{fd}", target, None, BIND)
    mount(None, target, None, REMOUNT | BIND | (0 if writable else RDONLY))
    os.close(fd)
if spec["no_new_privileges"]:
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
os.execv(argv[0], argv)
"""


def sandboxed(argv: list[str], *, read_only=False, tmpfs=(), bind=(), no_new_privileges=False) -> list[str]:
    """`argv` run by a Python that first rebuilds the file system as described, then execs it (same pid)."""
    spec = {"read_only": read_only, "tmpfs": list(tmpfs), "bind": list(bind), "no_new_privileges": no_new_privileges}
    return [sys.executable, "-I", "-c", SANDBOX, json.dumps(spec, default=str), *argv]


@cache
def sandbox_problem() -> str | None:
    reason = "rebuilding the units' sandbox needs root (a private mount namespace, as systemd makes one)"
    if os.geteuid() != 0:
        return reason
    completed = subprocess.run(sandboxed(["/bin/true"], read_only=True), capture_output=True, text=True, check=False)
    return None if completed.returncode == 0 else f"{reason}: {completed.stderr.strip()[-300:]}"


def unit_sandbox(unit: Unit, writable: list[Path], visible: list[Path]) -> dict:
    """The sandbox a unit asks for. `writable`: what the unit makes writable (ReadWritePaths=, RuntimeDirectory=,
    here already moved under the test's folder) and the SQLite folder standing for PostgreSQL; `visible`, bound
    read-only before them: what stands for /run and systemd's notify socket."""
    protect_system = unit.value("ProtectSystem", "no")
    if protect_system not in {"no", "strict"}:
        raise ValueError(f"ProtectSystem={protect_system} is not emulated here")
    tmpfs = [("/tmp", "1777"), ("/var/tmp", "1777")] if unit.value("PrivateTmp") == "true" else []
    if unit.value("ProtectHome") == "true":
        tmpfs += [(home, "000") for home in HOMES]
    # The one departure: what stands for /srv/myhug/app stays visible where it lies under a folder the unit empties:
    # this checkout and its virtual environment (a CI clone in /tmp), the Python the venv was made from (pyenv in
    # /root on these machines). On a server they are /srv/myhug/app and Debian's /usr/bin/python3.
    emptied = tuple(f"{target}/" for target, _mode in tmpfs)
    installs = {ROOT.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    visible = [*visible, *sorted(path for path in installs if str(path).startswith(emptied))]
    return {
        "read_only": protect_system == "strict",
        "tmpfs": tmpfs,
        "bind": [(path, path, False) for path in visible] + [(path, path, True) for path in writable],
        "no_new_privileges": unit.value("NoNewPrivileges") == "true",
    }


def test_the_sandbox_lets_a_unit_write_only_where_it_says(tmp_path):
    pg.require_service(sandbox_problem())
    unit = Unit(installed(UNITS[JOBS], tmp_path))
    [blobs] = map(Path, unit.values("ReadWritePaths"))
    blobs.mkdir()
    private = Path("/var/tmp") / f"myhug-probe-{secrets.token_hex(8)}"  # PrivateTmp: written, but not here
    probes = [blobs / "probe", private, ROOT / "probe", tmp_path / "probe"]
    script = 'for f in "$@"; do touch "$f" 2>/dev/null && echo "$f"; done; grep NoNewPrivs /proc/self/status'
    completed = subprocess.run(
        sandboxed(["/bin/sh", "-c", script, "sh", *map(str, probes)], **unit_sandbox(unit, [blobs], [tmp_path])),
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split("\n")[:-1] == [str(blobs / "probe"), str(private), "NoNewPrivs:\t1"]
    assert [probe.exists() for probe in probes] == [True, False, False, False]


# -- starting a unit's ExecStart the way systemd does ------------------------------------------------------------
def replace_line(text: str, name: str, value: str | None) -> str:
    """The settings file with NAME's line set to `value` (None: left out); the line must be there."""
    new, count = re.subn(rf"^{name}=.*\n", "" if value is None else f"{name}={value}\n", text, flags=re.M)
    assert count == 1, name
    return new


@dataclass
class Deployment:
    """The doc's sections 2, 5 and 6 under one folder: blob folder, settings file, database schema."""

    base: Path

    @property
    def env_file(self) -> Path:
        return self.base / "myhug.env"

    @property
    def database(self) -> Path:
        return self.base / "database" / "myhug.sqlite3"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    pg.require_service(sandbox_problem())
    deployment = Deployment(tmp_path_factory.mktemp("deployment"))
    settings = installed(filled_settings(), deployment.base)  # MYHUG_BLOB_DIR too: the unit's ReadWritePaths
    settings = replace_line(settings, "MYHUG_DATABASE_URL", f"sqlite:///{deployment.database}")
    settings = replace_line(settings, "MYHUG_RATELIMIT_STORAGE_URI", "memory://")  # no Redis needed here
    for name in re.findall(r"^(MYHUG_HIN_\w+)=", settings, re.M):  # "Without HIN, leave its five lines out"
        settings = replace_line(settings, name, None)
    deployment.env_file.write_text(settings)
    (deployment.base / "blobs").mkdir(mode=0o700)
    deployment.database.parent.mkdir()
    subprocess.run(  # section 6: `myhug-flask init-db`, which reads the settings with sh
        [f"{sys.prefix}/bin/flask", "--app", "web", "init-db"],
        cwd=ROOT,
        env={"PATH": SYSTEMD_PATH, **read_by_sh(deployment.env_file)},
        capture_output=True,
        check=True,
    )
    return deployment


@dataclass
class Started:
    """A unit's main process, its log and what it sent on the notify socket."""

    unit: Unit
    process: subprocess.Popen
    log: Path
    notify: socket.socket | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def readiness(self, timeout: float) -> tuple[int, str]:
        """(the sender's pid, the message) of the first notification that says READY=1."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            self.notify.settimeout(0.5)
            try:
                message, ancillary, _flags, _address = self.notify.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            [sender] = [
                struct.unpack("iII", data)[0] for level, kind, data in ancillary if kind == socket.SCM_CREDENTIALS
            ]
            if "READY=1" in message.decode().split("\n"):
                return sender, message.decode()
        raise AssertionError(f"no READY=1 within {timeout} s (exit status {self.process.poll()}):\n{self.logs()}")


# The [Service] settings `start` knows. It runs as the test's user, not User=/Group= (root here: the read-only
# mounts bind root too); Restart= is the manager's business.
EMULATED = {
    "Type", "NotifyAccess", "WorkingDirectory", "EnvironmentFile", "Environment", "ExecStart", "ExecReload",
    "KillMode", "KillSignal", "TimeoutStartSec", "TimeoutStopSec", "RuntimeDirectory", "ReadWritePaths",
    "ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "User", "Group", "Restart", "RestartSec",
}  # fmt: skip


@pytest.fixture
def start(deployment, tmp_path):
    """start(unit name, instance, **drop_in) → the unit's ExecStart running as systemd would run it."""
    started: list[Started] = []

    def run(name: str, instance: str | None = None, **drop_in: str) -> Started:
        runtime = tmp_path / "run"  # stands for /run
        unit = Unit(installed(UNITS[name], deployment.base), instance)
        not_emulated = {key for section, key, _value in unit.settings if section == "Service"} - EMULATED
        assert not_emulated == set(), f"{name}: teach this test what {not_emulated} does"
        assert unit.value("Type", "simple") in {"simple", "notify"}
        directories = [runtime / directory for directory in unit.values("RuntimeDirectory")]
        unit = Unit(re.sub(r"(?<![\w/])/run/", f"{runtime}/", installed(UNITS[name], deployment.base)), instance)
        environ = {"PATH": SYSTEMD_PATH, "INVOCATION_ID": secrets.token_hex(16)}
        if unit.value("User"):
            environ.update(USER=unit.value("User"), LOGNAME=unit.value("User"), **ACCOUNT)
        for assignment in unit.values("Environment"):
            environ.update(word.split("=", 1) for word in shlex.split(assignment))
        environ.update(drop_in)  # `systemctl edit`: a drop-in's Environment=
        for env_file in unit.values("EnvironmentFile"):  # these override Environment=
            environ.update(read_environment_file(Path(env_file.removeprefix("-"))))
        runtime.mkdir(exist_ok=True)
        for directory in directories:  # systemd makes them anew at each start
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
        if directories:
            environ["RUNTIME_DIRECTORY"] = ":".join(map(str, directories))
        notify = None
        if unit.value("Type") == "notify":
            (tmp_path / "systemd").mkdir(exist_ok=True)
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # who sent it: NotifyAccess=main
            notify.bind(str(tmp_path / "systemd" / "notify"))
            environ["NOTIFY_SOCKET"] = str(tmp_path / "systemd" / "notify")
        writable = [*map(Path, unit.values("ReadWritePaths")), *directories, deployment.database.parent]
        visible = [runtime] + ([tmp_path / "systemd"] if notify else [])
        argv = sandboxed(command_line(unit.value("ExecStart"), environ), **unit_sandbox(unit, writable, visible))
        log = tmp_path / f"{name}.log"
        with log.open("w") as output:  # the journal
            process = subprocess.Popen(
                argv,
                cwd=unit.value("WorkingDirectory"),
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a session of its own: what is left of it after a stop can be found
            )
        started.append(Started(unit, process, log, notify))
        return started[-1]

    yield run
    for service in started:
        if service.notify is not None:
            service.notify.close()
        with contextlib.suppress(ProcessLookupError):  # its process group: the main process and its workers
            os.killpg(service.pid, signal.SIGKILL)
        service.process.wait(timeout=30)


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, session id) of every process."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found.append((int(entry.name), fields[0], int(fields[1]), int(fields[3])))
    return found


def children(pid: int) -> set[int]:
    return {child for child, state, parent, _session in processes() if parent == pid and state != "Z"}


def session(pid: int) -> set[int]:
    """The live processes of the session `pid` leads: the main process and whatever it started."""
    return {member for member, state, _parent, sid in processes() if sid == pid and state != "Z"}


def web_node(start) -> tuple[Started, str]:
    """One myhug-web@PORT started, two workers (a drop-in's WEB_CONCURRENCY=2, as section 7 says); its address."""
    port = free_port()
    node = start(WEB, str(port), WEB_CONCURRENCY="2")
    return node, f"http://127.0.0.1:{port}"


def start_timeout(unit: Unit) -> float:
    return seconds(unit.value("TimeoutStartSec", DEFAULT_TIMEOUT_START))


@pytest.mark.slow
def test_the_web_node_notifies_ready_serves_and_stops_within_the_timeout(start):
    node, address = web_node(start)
    sender, message = node.readiness(timeout=start_timeout(node.unit))
    assert node.unit.value("NotifyAccess") == "main" and sender == node.pid, message  # else systemd ignores it
    assert cluster.http_status(f"{address}/readyz", timeout=60) == 200, node.logs()
    assert cluster.http_status(f"{address}/metrics", timeout=60) == 200  # the metrics folder in RuntimeDirectory
    workers = children(node.pid)
    assert len(workers) == 2

    assert node.unit.value("KillMode") == "mixed"  # the stop signal goes to the main process only
    node.process.send_signal(signal.Signals[node.unit.value("KillSignal", "SIGTERM")])
    assert node.process.wait(timeout=seconds(node.unit.value("TimeoutStopSec"))) == 0, node.logs()
    assert session(node.pid) == set()  # no worker left for systemd's final SIGKILL


def replaced(master: int, old: set[int]) -> bool:
    """Whether the workers `old` of a master are all gone and as many new ones have taken their place."""
    now = children(master)
    return len(now) == len(old) and not now & old


@pytest.mark.slow
def test_reload_starts_new_workers_under_the_same_master_and_keeps_serving(start):
    node, address = web_node(start)
    node.readiness(timeout=start_timeout(node.unit))
    assert cluster.http_status(f"{address}/healthz", timeout=60) == 200, node.logs()
    old = children(node.pid)

    answers: list[int | None] = []
    reloaded = threading.Event()

    def ask_meanwhile() -> None:
        while not reloaded.is_set():
            answers.append(cluster.http_status(f"{address}/healthz", timeout=60))

    asker = threading.Thread(target=ask_meanwhile)
    asker.start()
    try:
        reload = command_line(node.unit.value("ExecReload"), {"MAINPID": str(node.pid)})
        subprocess.run(reload, check=True)  # /bin/kill -s HUP <main pid>
        assert wait_for(lambda: replaced(node.pid, old), 120), node.logs()
    finally:
        reloaded.set()
        asker.join()
    assert node.process.poll() is None  # the same master: its pid, which systemd knows, did not change
    assert answers and set(answers) == {200}, answers
    assert cluster.http_status(f"{address}/healthz", timeout=60) == 200


@pytest.mark.slow
def test_the_jobs_unit_leads_runs_every_job_and_stops_with_0_within_the_timeout(start, deployment):
    orphan = deployment.base / "blobs" / "ab" / f"ab{secrets.token_hex(15)}"  # a blob no row names, long ago
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by an upload whose transaction rolled back")
    os.utime(orphan, (time.time() - 2 * ORPHAN_MIN_AGE.total_seconds(),) * 2)
    jobs = start(JOBS)
    host = socket.gethostname()

    def finished() -> dict[str, str]:
        with sqlite3.connect(deployment.database) as database:
            rows = database.execute("SELECT job, outcome FROM job_run WHERE node = ?", (host,)).fetchall()
        return {job: outcome for job, outcome in rows if outcome != "running"}

    everything = {job.name for job in tasks.SCHEDULE}
    assert wait_for(lambda: jobs.process.poll() is not None or set(finished()) == everything, 120)
    assert set(finished()) == everything, jobs.logs()
    assert set(finished().values()) == {"ok"}, finished()  # under the unit's sandbox
    assert not orphan.exists()  # the blob sweep deleted it: the jobs may write the blob folder (ReadWritePaths=)
    assert f"jobs runner {host}: leader" in jobs.logs()

    jobs.process.send_signal(signal.Signals[jobs.unit.value("KillSignal", "SIGTERM")])
    assert jobs.process.wait(timeout=seconds(jobs.unit.value("TimeoutStopSec"))) == 0, jobs.logs()
    assert f"jobs runner {host}: stopped" in jobs.logs()
    assert session(jobs.pid) == set()


# -- nginx: section 9 on Debian's own nginx.conf ------------------------------------------------------------------
NGINX_STATE = [("/run", "755"), ("/var/lib/nginx", "755")]  # nginx -t opens its pid file and makes its temp folders


def test_nginx_accepts_the_site_copied_as_section_9_says(tmp_path):
    """cp deploy/nginx.conf to sites-available, edit server_name (twice) and the certificate paths, link it from
    sites-enabled, remove the default site, `nginx -t`: with Debian's /etc/nginx/nginx.conf, in a private mount
    namespace where sites-available, sites-enabled and nginx's state are the test's and everything else is
    read-only (nothing of this machine's nginx is touched). tests/deploy/test_cluster.py checks the cluster's
    rendering of the same file (no port 80, no IPv6, other logs), not this copy."""
    pg.require_service(None if cluster.nginx_binary() else "nginx is not installed (apt-get install nginx)")
    pg.require_service(None if shutil.which("openssl") else "openssl is not installed (apt-get install openssl)")
    pg.require_service(sandbox_problem())
    debian = Path("/etc/nginx")
    main = debian / "nginx.conf"
    if not main.is_file() or "include /etc/nginx/sites-enabled/*;" not in main.read_text(errors="replace"):
        pytest.skip("this nginx is not Debian's: section 9's sites-enabled layout does not apply")
    tls = tmp_path / "tls"
    tls.mkdir()
    section_8 = re.search(r"^openssl req .*?\.pem\n", DOC, re.S | re.M).group(0).replace("/etc/ssl/myhug", str(tls))
    subprocess.run(["sh", "-c", section_8], capture_output=True, check=True)

    site = (ROOT / "deploy" / "nginx.conf").read_text()
    assert site.count("server_name www.myhug.ch;") == 2
    site = site.replace("server_name www.myhug.ch;", "server_name portal.example.org;")
    site = site.replace("/etc/ssl/myhug/", f"{tls}/")
    folders = {name: tmp_path / name for name in ("sites-available", "sites-enabled", "log")}
    for folder in folders.values():
        folder.mkdir()
    (folders["sites-available"] / "myhug").write_text(site)
    (folders["sites-enabled"] / "myhug").symlink_to("/etc/nginx/sites-available/myhug")
    bind = [
        (folders["sites-available"], debian / "sites-available", False),
        (folders["sites-enabled"], debian / "sites-enabled", False),
        (folders["log"], "/var/log/nginx", True),
    ]
    completed = subprocess.run(
        sandboxed([cluster.nginx_binary(), "-t"], read_only=True, tmpfs=NGINX_STATE, bind=bind),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "test is successful" in completed.stderr
    assert {p.name for p in folders["log"].iterdir()} >= {"myhug.access.log", "myhug.error.log"}  # the site's own
