"""bench/delivery.py runs end to end and prints the JSON its issue promises (numbers only: no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "fhir_docs_per_s",
    "service_docs_per_s",
    "page_median_ms",
    "page_p95_ms",
    "data_over_bare_sql",
    "queries_per_page",
)


def test_quick_json_has_the_promised_keys():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "delivery.py"), "--quick", "--json"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    [line] = completed.stdout.strip().splitlines()
    result = json.loads(line)
    for key in KEYS:
        assert key in result, key
    for key in KEYS[:-1]:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert isinstance(result["queries_per_page"], int) and result["queries_per_page"] > 0
    # Constant in the number of rows: page 20 costs what page 1 costs.
    assert result["queries_page_20"] == result["queries_page_1"]
