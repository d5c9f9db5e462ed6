"""bench/engine.py runs end to end and prints the JSON its issue promises (numbers only: no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICK_ROWS = 2_000  # bench/engine.py's --quick size for the memory part


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "engine.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_json_has_the_promised_keys():
    completed = run_bench("--quick", "--json", "--rows", str(QUICK_ROWS))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json must print one JSON object only, got:\n{completed.stdout}"
    result = json.loads(lines[0])
    for key in ("engine_over_bare_time", "per_object_over_engine_memory", "rows"):
        assert key in result, key
    assert isinstance(result["engine_over_bare_time"], float) and result["engine_over_bare_time"] > 0
    assert isinstance(result["per_object_over_engine_memory"], float) and result["per_object_over_engine_memory"] > 0
    assert result["rows"] == QUICK_ROWS
    assert result["same_sql"] is True  # the baseline sends the engine's statements, else the ratio means nothing
