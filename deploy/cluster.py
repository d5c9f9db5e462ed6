"""The local two-node cluster of `make run-cluster`: two gunicorn nodes behind nginx (TLS), one `flask jobs run`,
PostgreSQL and Redis, every file under instance/cluster/ (docs/deploy.md describes the same layout on a server).

    python deploy/cluster.py start     # checks what is needed, prepares the database, starts every process
    python deploy/cluster.py status    # each process: pid, alive, ready
    python deploy/cluster.py codes     # the latest SMS codes (they stay in the database: there is no SMS gateway)
    python deploy/cluster.py stop      # SIGTERM to each process group, SIGKILL after 30 s

The nodes run as production does (MYHUG_ENV=production: https only, Secure cookies, JSON logs, no development
pages), behind nginx terminating TLS with a self-signed certificate that `openssl` makes. Three departures from a
real server, all local: the demo data (published passwords) are loaded once by `flask demo` under the development
settings, since production refuses them; SMS stay in the outbox table (MYHUG_SMS_BACKEND=outbox), read with
`codes`; e-mails go to a mail sink (aiosmtpd) that keeps them in a Maildir under instance/cluster/mail/.

It never installs anything: a missing nginx, openssl, PostgreSQL or Redis is named with the command that installs
or starts it. bench/load.py starts its own cluster with this module (other ports, a scratch folder and database).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
SITE_TEMPLATE = ROOT / "deploy" / "nginx.conf"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
BIN = Path(sys.executable).parent  # the virtual environment's bin/: gunicorn, flask
STOP_GRACE_SECONDS = 30.0  # gunicorn's graceful_timeout: running requests finish
READY_TIMEOUT_SECONDS = 90.0
DPI_CLIENT = "cluster"


class ClusterError(RuntimeError):
    """Something the cluster needs is missing or did not start; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives and listens."""

    root: Path = ROOT / "instance" / "cluster"
    web_ports: tuple[int, ...] = (8001, 8002)
    https_port: int = 8443
    one_node_port: int | None = None  # bench/load.py: a second nginx address whose upstream is the first node only
    smtp_port: int = 8025
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"  # any database there: to create ours
    database: str = "myhug_cluster"
    redis_url: str = "redis://127.0.0.1:6379/1"
    workers: int | None = None  # per node; None: deploy/gunicorn.conf.py's (2 × CPUs) + 1
    settings: Mapping[str, str] = field(default_factory=dict)  # more MYHUG_* for this cluster

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def nginx_dir(self) -> Path:
        return self.root / "nginx"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def dpi_token_file(self) -> Path:
        return self.root / "dpi-token"

    @property
    def database_url(self) -> str:
        return urlunparse(urlparse(self.postgres_url)._replace(path=f"/{self.database}"))

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def web_name(self, port: int) -> str:
        return f"web-{port}"


# -- what the cluster needs ---------------------------------------------------------------------------------------
def nginx_binary() -> str | None:
    """nginx lives in /usr/sbin, which an ordinary user's PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def missing_prerequisites(layout: Layout) -> list[str]:
    """Each missing piece with how to get it; empty when the cluster can start."""
    missing = []
    if nginx_binary() is None:
        missing.append(
            "nginx is not installed: sudo apt-get install nginx (Debian's package; its service may stay off)"
        )
    if shutil.which("openssl") is None:
        missing.append("openssl is not installed: sudo apt-get install openssl")
    for program in ("gunicorn", "flask"):
        if not (BIN / program).exists():
            missing.append(f"{BIN / program} is missing: run `make install` first")
    try:
        import aiosmtpd  # noqa: F401  (the mail sink; a development requirement)
    except ImportError:
        missing.append("aiosmtpd is missing (the cluster's mail sink): run `make install` first")
    if (problem := postgres_problem(layout.postgres_url)) is not None:
        missing.append(problem)
    if (problem := redis_problem(layout.redis_url)) is not None:
        missing.append(problem)
    return missing


def postgres_problem(url: str) -> str | None:
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL is not reachable at {url} ({first_line}): sudo apt-get install postgresql, then allow "
            "this user to create databases (or set MYHUG_CLUSTER_POSTGRES to a URL that can)"
        )
    return None


def redis_problem(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {url} ({type(exc).__name__}): sudo apt-get install redis-server"
    return None


# -- configuration ------------------------------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (systemd's EnvironmentFile format, without quotes); # comments and blank lines skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def cluster_settings(layout: Layout, secrets_: Mapping[str, str]) -> dict[str, str]:
    """Every MYHUG_* setting of the nodes and the jobs process (the env file docs/deploy.md shows, for this machine)."""
    return {
        "MYHUG_ENV": "production",
        "MYHUG_SECRET_KEY": secrets_["MYHUG_SECRET_KEY"],
        "MYHUG_DATA_KEY": secrets_["MYHUG_DATA_KEY"],
        "MYHUG_DATABASE_URL": layout.database_url,
        "MYHUG_PUBLIC_URL": layout.public_url,
        "MYHUG_BLOB_DIR": str(layout.root / "blobs"),
        "MYHUG_RATELIMIT_STORAGE_URI": layout.redis_url,
        "MYHUG_TRUSTED_PROXIES": "1",
        "MYHUG_MAIL_BACKEND": "smtp",
        "MYHUG_MAIL_SERVER": "127.0.0.1",
        "MYHUG_MAIL_PORT": str(layout.smtp_port),
        "MYHUG_MAIL_SENDER": "myHUG <myhug@127.0.0.1>",
        "MYHUG_SMS_BACKEND": "outbox",
        "MYHUG_LOG_FORMAT": "json",
        **layout.settings,
    }


def write_env_file(layout: Layout) -> dict[str, str]:
    """The settings, written to `env` (mode 0600). The secret key and the data key are made once and kept: a new
    data key would make every stored document unreadable."""
    kept = read_env_file(layout.env_file) if layout.env_file.exists() else {}
    secrets_ = {
        "MYHUG_SECRET_KEY": kept.get("MYHUG_SECRET_KEY") or secrets.token_urlsafe(48),
        "MYHUG_DATA_KEY": kept.get("MYHUG_DATA_KEY") or secrets.token_urlsafe(32),
    }
    settings = cluster_settings(layout, secrets_)
    text = "# The local cluster's settings (deploy/cluster.py); the keys are kept across restarts.\n"
    text += "".join(f"{key}={value}\n" for key, value in settings.items())
    layout.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return settings


def process_env(settings: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a cluster process: this one's, minus any MYHUG_* of the shell, plus the cluster's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MYHUG_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(settings)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def make_certificate(layout: Layout) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made once): what the browser and bench/load.py trust."""
    cert, key = layout.tls_dir / "cert.pem", layout.tls_dir / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    layout.tls_dir.mkdir(parents=True, exist_ok=True)
    run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "825", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


# -- nginx ----------------------------------------------------------------------------------------------------------
# deploy/nginx.conf is the production site; these exact lines become the local cluster's (each must be found).
def render_site(layout: Layout, template: str, cert: Path, key: Path) -> str:
    """deploy/nginx.conf for this machine: 127.0.0.1 and the cluster's ports, its certificate and logs, no port 80."""
    text = re.sub(r"\nserver \{\n    listen 80;.*?\n\}\n", "\n", template, count=1, flags=re.S)
    if "listen 80;" in text:
        raise ClusterError("deploy/nginx.conf: the port 80 server block changed shape; update render_site")
    upstream = "".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;\n" for port in layout.web_ports)
    replacements = [
        ("    server 127.0.0.1:8001 max_fails=1 fail_timeout=10s;\n", upstream),
        ("    server 127.0.0.1:8002 max_fails=1 fail_timeout=10s;\n", ""),
        ("    listen 443 ssl http2;", f"    listen 127.0.0.1:{layout.https_port} ssl http2;"),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("    server_name www.myhug.ch;", "    server_name 127.0.0.1;"),
        ("/etc/ssl/myhug/fullchain.pem", str(cert)),
        ("/etc/ssl/myhug/privkey.pem", str(key)),
        ("/var/log/nginx/myhug.access.log", str(layout.logs / "nginx-access.log")),
        ("/var/log/nginx/myhug.error.log", str(layout.logs / "nginx-error.log")),
    ]
    for old, new in replacements:
        if old not in text:
            raise ClusterError(f"deploy/nginx.conf no longer has {old.strip()!r}; update render_site")
        text = text.replace(old, new, 1)
    if layout.one_node_port is not None:
        text += one_node_server(text, layout)
    return text


def one_node_server(site: str, layout: Layout) -> str:
    """The same server on another port, whose upstream is the first node alone, with its own access log:
    bench/load.py's baseline."""
    server = site[site.rindex("\nserver {") :]
    server = server.replace(f"listen 127.0.0.1:{layout.https_port} ", f"listen 127.0.0.1:{layout.one_node_port} ")
    server = server.replace("proxy_pass http://myhug;", "proxy_pass http://myhug_one_node;")
    server = server.replace(str(layout.logs / "nginx-access.log"), str(layout.logs / "nginx-access-one-node.log"))
    port = layout.web_ports[0]
    return f"\nupstream myhug_one_node {{\n    server 127.0.0.1:{port};\n}}\n{server}"


def nginx_main_config(layout: Layout, site_path: Path) -> str:
    """nginx as an ordinary program: in the foreground, every file under the cluster's folder, nothing in /etc."""
    temp = layout.nginx_dir / "temp"
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # as root, workers drop to nobody
    return f"""# Written by deploy/cluster.py for the local cluster (the production site is deploy/nginx.conf).
daemon off;
{user}worker_processes auto;
worker_rlimit_nofile 8192;
pid {layout.nginx_dir / "nginx.pid"};
error_log {layout.logs / "nginx-error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    default_type application/octet-stream;
    server_tokens off;
    keepalive_timeout 75s;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    include {site_path};
}}
"""


def write_nginx_config(layout: Layout) -> Path:
    cert, key = make_certificate(layout)
    layout.nginx_dir.mkdir(parents=True, exist_ok=True)
    site = layout.nginx_dir / "myhug-site.conf"
    site.write_text(render_site(layout, SITE_TEMPLATE.read_text(), cert, key))
    main = layout.nginx_dir / "nginx.conf"
    main.write_text(nginx_main_config(layout, site))
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        folder = layout.nginx_dir / "temp" / name
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "nobody", "nogroup")  # where workers buffer request bodies and answers
    return main


def nginx_argv(layout: Layout) -> list[str]:
    binary = nginx_binary()
    if binary is None:
        raise ClusterError("nginx is not installed: sudo apt-get install nginx")
    config = layout.nginx_dir / "nginx.conf"
    return [binary, "-p", str(layout.nginx_dir), "-c", str(config), "-e", str(layout.logs / "nginx-error.log")]


# -- the database ---------------------------------------------------------------------------------------------------
def create_database(layout: Layout) -> bool:
    """CREATE DATABASE unless it exists; True if it was created."""
    import psycopg2

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", layout.database):
        raise ClusterError(f"database name {layout.database!r}: lower-case letters, digits and _ only")
    connection = psycopg2.connect(layout.postgres_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (layout.database,))
            if cursor.fetchone() is not None:
                return False
            cursor.execute(f'CREATE DATABASE "{layout.database}"')
            return True
    finally:
        connection.close()


def drop_database(layout: Layout) -> None:
    import psycopg2

    connection = psycopg2.connect(layout.postgres_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{layout.database}" WITH (FORCE)')
    finally:
        connection.close()


def flask(settings: Mapping[str, str], *args: str, **extra_env: str) -> str:
    """`flask --app web ARGS…` with the cluster's settings; its output (stderr too, on failure, in the error)."""
    return run([str(BIN / "flask"), "--app", "web", *args], env=process_env(settings, **extra_env))


def prepare_database(layout: Layout, settings: Mapping[str, str], *, demo: bool) -> None:
    """The database, its schema (`flask init-db` also runs the migrations), the demo data once, and a DPI client
    whose token is kept in `dpi-token` (mode 0600) for whoever plays the DPI (bench/load.py, curl)."""
    if create_database(layout):
        print(f"created database {layout.database}")
    print(flask(settings, "init-db").strip())
    if demo:
        # Production refuses the demo data (their passwords are published). This cluster is local and says so.
        print(flask(settings, "demo", MYHUG_ENV="development").strip())
    if not layout.dpi_token_file.exists():
        name = DPI_CLIENT if demo else f"{DPI_CLIENT}-{secrets.token_hex(3)}"
        try:
            output = flask(settings, "dpi", "create-client", name)
        except ClusterError:  # the name is taken (an earlier cluster on this database lost its token file)
            output = flask(settings, "dpi", "create-client", f"{DPI_CLIENT}-{secrets.token_hex(3)}")
        token = re.search(r"bearer token: (\S+)", output).group(1)
        fd = os.open(layout.dpi_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")


# -- processes ------------------------------------------------------------------------------------------------------
def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Run a command to its end; its output, or a ClusterError quoting it."""
    completed = subprocess.run(  # noqa: S603  (our own argv, no shell)
        list(argv), cwd=ROOT, env=dict(env) if env is not None else None, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise ClusterError(f"{' '.join(argv[:4])}… failed:\n{completed.stdout}{completed.stderr}".rstrip())
    return completed.stdout


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc), which tells it from a later process given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def spawn(layout: Layout, name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start `argv` in a session of its own (so that stopping it stops all its children), logging to logs/NAME.log;
    its pid and start time go to pids/NAME.pid."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with open(layout.logs / f"{name}.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603  (our own argv, no shell)
            list(argv), cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    (layout.pids / f"{name}.pid").write_text(f"{process.pid} {start_time(process.pid)}\n")
    return process.pid


def running(layout: Layout) -> dict[str, int]:
    """name → pid of the processes started by this layout that are still alive (pid files checked against /proc)."""
    alive = {}
    for pid_file in sorted(layout.pids.glob("*.pid")) if layout.pids.exists() else []:
        pid_text, _, started = pid_file.read_text().strip().partition(" ")
        pid = int(pid_text)
        if start_time(pid) == started and not _is_zombie(pid):
            alive[pid_file.stem] = pid
    return alive


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def signal_group(layout: Layout, name: str, sig: int) -> bool:
    """Send `sig` to the process group of `name` (the process and its children); False if it was not running."""
    pid = running(layout).get(name)
    if pid is None:
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_process(layout: Layout, name: str, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM (gunicorn and the jobs finish what they run), then SIGKILL if it is still there after `grace`."""
    if signal_group(layout, name, signal.SIGTERM):
        deadline = time.monotonic() + grace
        while name in running(layout) and time.monotonic() < deadline:
            time.sleep(0.2)
        signal_group(layout, name, signal.SIGKILL)
    (layout.pids / f"{name}.pid").unlink(missing_ok=True)


def web_env(layout: Layout, settings: Mapping[str, str], port: int) -> dict[str, str]:
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(layout.root / "metrics" / layout.web_name(port))}
    if layout.workers:
        extra["WEB_CONCURRENCY"] = str(layout.workers)
    return process_env(settings, **extra)


def start_web(layout: Layout, settings: Mapping[str, str], port: int) -> int:
    argv = [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}"]
    return spawn(layout, layout.web_name(port), argv, web_env(layout, settings, port))


def start_jobs(layout: Layout, settings: Mapping[str, str], name: str = "jobs-1") -> int:
    """One `flask jobs run`; another started beside it stands by for the leader lock (jobs/leader.py)."""
    argv = [str(BIN / "flask"), "--app", "web", "jobs", "run", "--node", f"{socket.gethostname()}:{name}"]
    return spawn(layout, name, argv, process_env(settings))


def start_mail_sink(layout: Layout) -> int:
    argv = [
        sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{layout.smtp_port}",
        "-c", "aiosmtpd.handlers.Mailbox", str(layout.mail_dir),
    ]  # fmt: skip
    return spawn(layout, "mail", argv, process_env({}))


def start_nginx(layout: Layout) -> int:
    write_nginx_config(layout)
    run([*nginx_argv(layout), "-t"])  # a broken configuration is reported before anything listens
    return spawn(layout, "nginx", nginx_argv(layout), process_env({}))


# -- readiness ------------------------------------------------------------------------------------------------------
def http_status(url: str, cafile: Path | None = None, timeout: float = 3.0) -> int | None:
    """The HTTP status of GET `url`, or None if nothing answered."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310  (our URLs)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(what: str, check, layout: Layout, name: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if name not in running(layout):
            raise ClusterError(f"{what} exited during start-up: see {layout.logs / (name + '.log')}")
        time.sleep(0.3)
    raise ClusterError(f"{what} not ready after {timeout:.0f} s: see {layout.logs / (name + '.log')}")


def wait_for_web(layout: Layout, port: int) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    wait_until(f"gunicorn on port {port}", lambda: http_status(url) == 200, layout, layout.web_name(port))


# -- the commands ---------------------------------------------------------------------------------------------------
def start(layout: Layout, *, demo: bool = True) -> str:
    """Everything, in dependency order; returns the DPI client's token. Refuses if the cluster is already up."""
    missing = missing_prerequisites(layout)
    if missing:
        raise ClusterError("the cluster cannot start:\n" + "\n".join(f"  - {line}" for line in missing))
    if running(layout):
        raise ClusterError(f"already running ({', '.join(running(layout))}): `python deploy/cluster.py stop` first")
    taken = [
        p for p in (*layout.web_ports, layout.https_port, layout.one_node_port, layout.smtp_port) if p and port_open(p)
    ]
    if taken:
        raise ClusterError(f"ports already in use on 127.0.0.1: {', '.join(map(str, taken))}")
    settings = write_env_file(layout)
    prepare_database(layout, settings, demo=demo)
    try:
        start_mail_sink(layout)
        wait_until("the mail sink", lambda: port_open(layout.smtp_port), layout, "mail")
        for port in layout.web_ports:
            start_web(layout, settings, port)
        for port in layout.web_ports:
            wait_for_web(layout, port)
        start_jobs(layout, settings)
        start_nginx(layout)
        cafile = layout.tls_dir / "cert.pem"
        wait_until(
            "nginx", lambda: http_status(f"{layout.public_url}/healthz", cafile) == 200, layout, "nginx", timeout=30
        )
    except BaseException:
        stop(layout)
        raise
    return layout.dpi_token_file.read_text().strip()


def stop(layout: Layout) -> list[str]:
    """nginx first (no new requests), then the nodes and the jobs (they finish what runs), the mail sink last."""
    names = list(running(layout))
    order = sorted(names, key=lambda n: (n != "nginx", n == "mail", n))
    for name in order:
        stop_process(layout, name)
    return order


def status_rows(layout: Layout) -> list[tuple[str, str, str]]:
    alive = running(layout)
    cafile = layout.tls_dir / "cert.pem"
    rows = []
    for port in layout.web_ports:
        name = layout.web_name(port)
        ready = http_status(f"http://127.0.0.1:{port}/readyz") if name in alive else None
        rows.append((name, str(alive.get(name, "-")), f"/readyz {ready}" if ready else "down"))
    for name in sorted(n for n in alive if n.startswith("jobs")):
        rows.append((name, str(alive[name]), "running (leader or standby: see its log)"))
    https = http_status(f"{layout.public_url}/healthz", cafile) if "nginx" in alive else None
    rows.append(("nginx", str(alive.get("nginx", "-")), f"{layout.public_url} /healthz {https}" if https else "down"))
    rows.append(("mail", str(alive.get("mail", "-")), f"Maildir {layout.mail_dir}" if "mail" in alive else "down"))
    return rows


def latest_codes(layout: Layout, count: int = 5) -> list[tuple[str, str, str]]:
    """The latest SMS of the outbox (time, recipient, text): how a demo login reads its code on this cluster."""
    import psycopg2

    connection = psycopg2.connect(layout.database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT created_at, recipient, body FROM outbox_message WHERE channel = 'sms' "
                "ORDER BY id DESC LIMIT %s",
                (count,),
            )
            return [(str(at)[:19], to, body) for at, to, body in cursor.fetchall()]
    finally:
        connection.close()


def default_layout() -> Layout:
    return Layout(postgres_url=os.environ.get("MYHUG_CLUSTER_POSTGRES", Layout.postgres_url))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "codes"))
    args = parser.parse_args(argv)
    layout = default_layout()
    try:
        if args.command == "start":
            start(layout)
            print(f"\nmyHUG runs on two nodes behind nginx: {layout.public_url}/ (self-signed certificate:")
            print(f"  {layout.tls_dir / 'cert.pem'}). Demo logins as for `make run` (`flask demo` printed them above);")
            print(f"  SMS codes: python deploy/cluster.py codes. The DPI client's token: {layout.dpi_token_file}")
            print(f"  logs: {layout.logs}/   stop: make stop-cluster")
        elif args.command == "stop":
            stopped = stop(layout)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "status":
            for name, pid, state in status_rows(layout):
                print(f"{name:10} {pid:>8}  {state}")
        else:
            for at, to, body in latest_codes(layout):
                print(f"{at}  {to}  {body}")
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
