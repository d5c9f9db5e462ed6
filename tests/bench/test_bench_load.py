"""bench/load.py --quick runs a real two-node cluster end to end and prints the JSON its issue promises, with a backup
taken under the load, restored into a fresh database and checked.

No timing assertions: the latencies are only checked to be there. What is checked is what must hold at any speed:
no error, nothing lost, nothing duplicated, and both nodes served in the two-node run, one in the baseline.

Where nginx, PostgreSQL or Redis is absent this test is skipped; under MYHUG_REQUIRE_SERVICES=1 (`.ci/run`, which
installs and starts them) that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import load
from deploy import cluster
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("documents", "document", "pdf", "patients", "dpi")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_quick_run_loses_and_duplicates_nothing_and_reports_p99_per_page():
    nginx = None if cluster.nginx_binary() else "nginx is not installed (apt-get install nginx): the load test needs it"
    pg.require_service(nginx)
    pg.require()
    pg.require_service(cluster.redis_problem("redis://127.0.0.1:6379/2"))
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            "--quick",
            "--backup-during",
            "--json",
            "--postgres",
            pg.base_url(),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    [line] = completed.stdout.strip().splitlines()
    result = json.loads(line)

    assert (result["errors"], result["lost"], result["duplicated"]) == (0, 0, 0), result["detail"]
    assert (result["one_node"]["errors"], result["one_node"]["lost"], result["one_node"]["duplicated"]) == (0, 0, 0)
    for report in (result, result["one_node"]):
        assert set(report["p99_ms"]) == set(PAGES)
        assert all(isinstance(ms, float) and ms > 0 for ms in report["p99_ms"].values()), report["p99_ms"]
    assert result["documents"] > 0 and result["one_node"]["documents"] > 0
    # Both nodes answered through nginx in the two-node run; one only behind the baseline address.
    assert len(result["detail"]["served_by_node"]) == 2
    assert len(result["one_node"]["detail"]["served_by_node"]) == 1
    assert result["emails"]["sent"] > 0  # notifications left, and every one arrived once (lost, duplicated: 0)

    # The backup taken under load restored into a fresh database: `audit verify` passed in its own process, every
    # table has the manifest's rows, the trail is the live one up to the backup's head, every PDF decrypts.
    backup = result["backup_during"]
    assert backup["ok"] and result["backup_problems"] == [], (backup, result["backup_problems"])
    restored = backup["restore"]
    assert restored["audit_verify"].startswith("audit trail intact")
    assert restored["tables_differing"] == {} and restored["audit_prefix_of_live"]
    assert restored["documents"] > 0 and restored["documents_unreadable"] == 0


RESTORED = {
    "restored": True,
    "restore_seconds": 1.0,
    "audit_verify": "audit trail intact: 10 events",
    "audit_head_id": 10,
    "audit_prefix_of_live": True,
    "tables_differing": {},
    "rows": 50,
    "documents": 3,
    "documents_unreadable": 0,
}


@pytest.mark.parametrize(
    ("backup", "problem"),
    [
        ({"ok": False}, "the backup under load failed"),
        ({"ok": True, "restore": {"restored": False, "problems": ["refused"]}}, "refused"),
        ({"ok": True, "restore": {**RESTORED, "audit_verify": "FAILED: broken at 4"}}, "audit verify"),
        ({"ok": True, "restore": {**RESTORED, "tables_differing": {"delivery": {}}}}, "row counts differ"),
        ({"ok": True, "restore": {**RESTORED, "audit_prefix_of_live": False}}, "not the live one"),
        ({"ok": True, "restore": {**RESTORED, "documents_unreadable": 2}}, "2 restored PDFs"),
    ],
)
def test_a_backup_that_fails_any_check_is_reported_as_a_problem(backup, problem):
    problems = load.backup_problems(backup)
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_backup_that_passes_every_check_or_none_asked_for_is_no_problem():
    assert load.backup_problems({"ok": True, "restore": RESTORED}) == []
    assert load.backup_problems(None) == []
