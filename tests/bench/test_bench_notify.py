"""bench/notify.py runs end to end and prints the JSON its issue promises (numbers only: no timing assertions).

The bench itself fails (non-zero exit) if an e-mail is missing or duplicated at the SMTP server, or a delivery is not
in the state its physician's preference implies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_json_has_the_promised_keys_and_every_notice_arrived_once():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "notify.py"), "--quick", "--json"],
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
    for key in ("seconds", "messages_per_s", "peak_mib"):
        assert isinstance(result[key], float) and result[key] >= 0, key
    # 300 physicians: 1/2 "each" and 1/3 "digest" get one e-mail; 1/6 "none" get none.
    assert result["messages"] == 250
    assert result["notified"] == 250 * 20  # 6,000 deliveries over 300 physicians: 20 each
