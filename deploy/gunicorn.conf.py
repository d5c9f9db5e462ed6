"""gunicorn settings for one myHUG node behind nginx (docs/deploy.md; `make run-cluster` starts two with it).

    gunicorn -c deploy/gunicorn.conf.py --bind 127.0.0.1:8001

The app's settings come from MYHUG_* variables (config/__init__.py); these are the web server's. Command-line
options win over this file, and WEB_CONCURRENCY sets the number of workers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

wsgi_app = "web:create_app()"
bind = ["127.0.0.1:8001"]  # loopback: nginx on the same machine is the only client (MYHUG_TRUSTED_PROXIES=1)


def cpu_count() -> int:
    """The CPUs this process may run on (a container's or a cgroup's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Sync workers: nginx buffers whole requests and responses, so a worker never waits on a slow client, and each
# request has one database connection to itself. gunicorn's rule of thumb, (2 × CPUs) + 1, keeps the CPUs busy while
# some workers wait on PostgreSQL.
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * cpu_count() + 1)

# No preloading: each worker imports the app after the fork. Then `kill -HUP` (systemctl reload) starts workers on
# the new code while the old ones finish their requests, which is how an upgrade restarts gracefully; and no
# connection or thread opened while importing (database, Redis, metrics) is ever shared by forked workers. The
# price is a second or so of start-up per worker and no copy-on-write memory sharing.
preload_app = False

# A request that takes longer than this is stuck: the worker is killed and replaced (the FHIR API's biggest Bundle,
# three 20 MiB PDFs, is received by nginx first and reaches the worker whole). A graceful stop (SIGTERM, HUP) lets
# running requests finish within graceful_timeout.
timeout = 30
graceful_timeout = 30

# The app writes one access line per request, in JSON with the request id (web/observability.py): no second one.
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "myhug-web"

# gunicorn ≥ 25 opens a control socket at one default path per user: two nodes on one machine would take it from
# each other. systemd and signals (TERM, HUP) manage the nodes; older gunicorn ignores this unknown name.
control_socket_disable = True

# X-Forwarded-Proto is believed only from nginx's address (gunicorn's default, said here so it is not lost);
# X-Forwarded-For is the app's business (MYHUG_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def prometheus_dir() -> Path | None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None


def on_starting(server) -> None:
    """Once, in the master, before any worker exists: the metrics folder starts empty (files of a previous run's
    workers would be counted again). Not on a reload, when live workers' files must stay."""
    directory = prometheus_dir()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    """A worker ended: its live gauges stop counting (its counters stay, summed into the totals)."""
    if prometheus_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
