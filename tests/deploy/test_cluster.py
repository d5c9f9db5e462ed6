"""deploy/: the gunicorn settings, the nginx site rendered for the local cluster, its settings and its processes.

The whole cluster under load is tests/bench/test_bench_load.py; these check the pieces without starting it.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import prometheus_client.multiprocess  # noqa: F401  (see below)
import pytest
from gunicorn.config import KNOWN_SETTINGS

from config import load_config
from deploy import cluster

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
TEMPLATE = (ROOT / "deploy" / "nginx.conf").read_text()


# prometheus_client picks, once, at its first import, whether values live in files (PROMETHEUS_MULTIPROC_DIR set) or
# in memory: imported above, before a test here sets that variable, so that later tests' metrics stay in memory.


def layout(tmp_path, **fields) -> cluster.Layout:
    return cluster.Layout(root=tmp_path / "cluster", **fields)


def gunicorn_settings(monkeypatch, **env) -> dict:
    for name in ("WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


# -- gunicorn ---------------------------------------------------------------------------------------------------------
def test_every_gunicorn_setting_is_one_gunicorn_knows(monkeypatch):
    """gunicorn ignores unknown names in its configuration file: a typo would silently keep the default."""
    helpers = {"cpu_count", "prometheus_dir", "annotations"}
    known = {setting.name for setting in KNOWN_SETTINGS}
    names = {
        name
        for name, value in gunicorn_settings(monkeypatch).items()
        if not name.startswith("_") and name not in helpers and not isinstance(value, type(os))
        and name not in {"Path"}
    }  # fmt: skip
    assert names - known == set()
    assert {"workers", "preload_app", "accesslog", "on_starting", "child_exit"} <= names


def test_workers_follow_the_cpus_unless_told(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    assert gunicorn_settings(monkeypatch)["workers"] == 2 * cpus + 1
    assert gunicorn_settings(monkeypatch, WEB_CONCURRENCY="3")["workers"] == 3


def test_gunicorn_leaves_the_access_log_to_the_app_and_does_not_preload(monkeypatch):
    settings = gunicorn_settings(monkeypatch)
    assert settings["accesslog"] is None
    assert settings["preload_app"] is False  # HUP reloads the code: the graceful upgrade of docs/deploy.md
    assert settings["worker_class"] == "sync"
    assert settings["control_socket_disable"] is True  # two nodes on one machine would share its default path


def test_the_metrics_folder_starts_empty_and_a_dead_workers_gauges_go(monkeypatch, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999.db").write_bytes(b"a previous run's worker")
    settings = gunicorn_settings(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(folder))
    settings["on_starting"](None)
    assert folder.is_dir() and list(folder.iterdir()) == []

    (folder / "gauge_livesum_4242.db").write_bytes(b"")
    (folder / "counter_4242.db").write_bytes(b"")
    settings["child_exit"](None, type("Worker", (), {"pid": 4242})())
    assert sorted(p.name for p in folder.iterdir()) == ["counter_4242.db"]  # counters stay in the totals


# -- nginx -----------------------------------------------------------------------------------------------------------
def test_the_site_is_rendered_for_this_machine(tmp_path):
    site = cluster.render_site(
        layout(tmp_path, web_ports=(9001, 9002), https_port=9443), TEMPLATE, Path("/c/cert.pem"), Path("/c/key.pem")
    )
    assert re.findall(r"server (127\.0\.0\.1:\d+)", site) == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert "listen 127.0.0.1:9443 ssl http2;" in site
    assert "listen 80" not in site and "[::]" not in site and "www.myhug.ch" not in site
    assert "ssl_certificate     /c/cert.pem;" in site and "ssl_certificate_key /c/key.pem;" in site
    assert "/var/log" not in site and str(tmp_path / "cluster" / "logs" / "nginx-access.log") in site
    # What the deployment relies on is kept as written in deploy/nginx.conf.
    for line in (
        "proxy_next_upstream error timeout http_502 http_503;",
        "proxy_set_header X-Request-ID $myhug_request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "client_max_body_size 82m;",
    ):
        assert line in site


def test_the_baseline_address_reaches_the_first_node_only(tmp_path):
    site = cluster.render_site(
        layout(tmp_path, web_ports=(9001, 9002), https_port=9443, one_node_port=9444),
        TEMPLATE,
        Path("/c/cert.pem"),
        Path("/c/key.pem"),
    )
    one_node = site[site.index("upstream myhug_one_node") :]
    assert re.findall(r"server (127\.0\.0\.1:\d+)", one_node) == ["127.0.0.1:9001"]
    assert "listen 127.0.0.1:9444 ssl http2;" in one_node and "proxy_pass http://myhug_one_node;" in one_node
    assert site.count("proxy_pass http://myhug;") == 1
    assert str(tmp_path / "cluster" / "logs" / "nginx-access-one-node.log") in one_node


def test_a_changed_template_stops_the_rendering_instead_of_half_applying_it(tmp_path):
    changed = TEMPLATE.replace("/etc/ssl/myhug/privkey.pem", "/etc/ssl/private/myhug.key")
    with pytest.raises(cluster.ClusterError, match=r"privkey\.pem"):
        cluster.render_site(layout(tmp_path), changed, Path("/c/cert.pem"), Path("/c/key.pem"))


@pytest.mark.skipif(cluster.nginx_binary() is None, reason="nginx is not installed (apt-get install nginx)")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_nginx_accepts_the_rendered_configuration(tmp_path):
    cluster_layout = layout(tmp_path, one_node_port=9444)
    cluster_layout.logs.mkdir(parents=True)
    cluster.write_nginx_config(cluster_layout)
    completed = subprocess.run([*cluster.nginx_argv(cluster_layout), "-t"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert (cluster_layout.tls_dir / "key.pem").stat().st_mode & 0o777 == 0o600


# -- settings ----------------------------------------------------------------------------------------------------------
def test_the_env_file_is_private_keeps_its_keys_and_is_a_valid_production_configuration(tmp_path):
    cluster_layout = layout(tmp_path)
    first = cluster.write_env_file(cluster_layout)
    again = cluster.write_env_file(cluster_layout)
    assert cluster_layout.env_file.stat().st_mode & 0o777 == 0o600
    assert (again["MYHUG_SECRET_KEY"], again["MYHUG_DATA_KEY"]) == (first["MYHUG_SECRET_KEY"], first["MYHUG_DATA_KEY"])
    assert cluster.read_env_file(cluster_layout.env_file) == again
    config = load_config(again, instance_path=tmp_path / "instance")
    assert config["MYHUG_ENV"] == "production" and config["SESSION_COOKIE_SECURE"] is True
    assert config["TRUSTED_PROXIES"] == 1
    assert config["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert config["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/myhug_cluster"


def test_the_shells_settings_do_not_leak_into_the_cluster(monkeypatch):
    monkeypatch.setenv("MYHUG_DATABASE_URL", "sqlite:///somewhere-else.sqlite3")
    monkeypatch.setenv("MYHUG_DEBUG_THING", "1")
    env = cluster.process_env({"MYHUG_DATABASE_URL": "postgresql://db/cluster"})
    assert env["MYHUG_DATABASE_URL"] == "postgresql://db/cluster"
    assert "MYHUG_DEBUG_THING" not in env


def test_what_is_missing_is_named_with_how_to_get_it(tmp_path):
    unreachable = layout(
        tmp_path, postgres_url="postgresql://postgres@127.0.0.1:1/postgres", redis_url="redis://127.0.0.1:1/0"
    )
    missing = "\n".join(cluster.missing_prerequisites(unreachable))
    assert "PostgreSQL is not reachable at postgresql://postgres@127.0.0.1:1/postgres" in missing
    assert "Redis is not reachable at redis://127.0.0.1:1/0" in missing
    assert "apt-get install postgresql" in missing and "apt-get install redis-server" in missing


# -- processes ---------------------------------------------------------------------------------------------------------
def test_a_process_is_followed_by_pid_and_start_time_and_stopped_with_its_children(tmp_path):
    cluster_layout = layout(tmp_path)
    # A parent that starts a child and ignores SIGTERM: the stop must still end both (SIGKILL after the grace).
    script = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "subprocess.Popen(['sleep', '60']); time.sleep(60)"  # fmt: skip
    pid = cluster.spawn(cluster_layout, "stubborn", [sys.executable, "-c", script], dict(os.environ))
    assert cluster.running(cluster_layout) == {"stubborn": pid}
    cluster.stop_process(cluster_layout, "stubborn", grace=0.5)
    assert cluster.running(cluster_layout) == {}
    assert subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, check=False).stdout == b""


def test_a_pid_file_whose_process_is_gone_names_nothing_to_signal(tmp_path):
    cluster_layout = layout(tmp_path)
    cluster_layout.pids.mkdir(parents=True)
    # This test's own pid with another start time: a pid the kernel gave to someone else since.
    (cluster_layout.pids / "old.pid").write_text(f"{os.getpid()} 1\n")
    assert cluster.running(cluster_layout) == {}
    assert cluster.signal_group(cluster_layout, "old", signal.SIGTERM) is False
