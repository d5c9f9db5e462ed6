"""bench/login.py runs end to end and prints the JSON its issue promises (numbers only: no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_json_has_the_promised_keys():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "login.py"), "--logins", "3", "--json"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    [line] = completed.stdout.strip().splitlines()
    result = json.loads(line)
    for key in ("password_step_per_s", "code_step_per_s"):
        assert isinstance(result[key], float) and result[key] > 0
    assert result["logins"] == 3
    # Measured with the production argon2 parameters, not the test suite's cheap ones.
    assert result["argon2"] == {"time_cost": 3, "memory_cost_kib": 65536, "parallelism": 4}
