"""bench/login.py: requests per second of the two login steps on the Flask test client, argon2 as configured.

The password step costs one argon2id verification by design (DESIGN §6): its baseline, measured in the same run,
is a bare argon2 verification with the same parameters, so the ratio shows what the portal adds around it. The
code step's baseline is the cheapest request the portal answers (/healthz) through the same client.

    python bench/login.py [--logins 40] [--json]
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Line, emit_json, fmt_number, fmt_seconds, median, print_results

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "un lac, deux cygnes et trois barques"


def build(logins: int, workdir: Path):
    import models
    from models import Account, Role, schema
    from security import encryption, passwords
    from web import create_app
    from workflows import ACCOUNT, SYSTEM, Actor, engine

    url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    database = models.open_database(url)
    database.url = url
    models.db.initialize(database)
    schema.upgrade()
    key = secrets.token_bytes(32)
    encryption.configure(key)
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": database,
            "DATABASE_URL": url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DATA_KEY": key,
            "INSTANCE_PATH": str(workdir / "instance"),
            # The limits protect real deployments; this benchmark is one address doing many logins.
            "LOGIN_RATE_LIMIT": "1000000 per minute",
            "SMS_RATE_LIMIT": "1000000 per hour",
        }
    )
    stored_hash = passwords.hash_password(PASSWORD)
    usernames = []
    with models.db.atomic():
        for n in range(logins):
            account = Account(
                username=f"bench{n}", email=f"bench{n}@example.ch", role=Role.CLINICIAN, mobile="+41790000000"
            )
            engine.create(ACCOUNT, account, "issue_login", SYSTEM)
            account.password_hash, account.password_is_temporary = stored_hash, False
            engine.fire(ACCOUNT, account, "activate", Actor(Role.CLINICIAN, account.id))
            usernames.append(account.username)
    return app, usernames, stored_hash


def last_code(username: str) -> str:
    from models import Account, OutboxMessage

    account = Account.get(Account.username == username)
    message = (
        OutboxMessage.select()
        .where((OutboxMessage.template == "login_code") & (OutboxMessage.related_id == account.id))
        .order_by(OutboxMessage.id.desc())
        .get()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def run(logins: int) -> dict:
    from security import passwords

    with tempfile.TemporaryDirectory() as tmp:
        app, usernames, stored_hash = build(logins, Path(tmp))
        params = passwords.parameters()
        password_times, code_times, health_times, argon_times = [], [], [], []
        health = app.test_client()
        for username in usernames:
            client = app.test_client()
            token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
            started = time.perf_counter()
            response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
            password_times.append(time.perf_counter() - started)
            assert response.status_code == 302 and response.headers["Location"] == "/login/code", response.status
            page = client.get("/login/code").get_data(as_text=True)
            token = CSRF.search(page).group(1)
            code = last_code(username)
            started = time.perf_counter()
            response = client.post("/login/code", data={"csrf_token": token, "code": code})
            code_times.append(time.perf_counter() - started)
            assert response.status_code == 302, response.status
            # Baselines, interleaved so both sides see the same machine.
            started = time.perf_counter()
            passwords.verify_password(stored_hash, PASSWORD)
            argon_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            health.get("/healthz")
            health_times.append(time.perf_counter() - started)
    password_step, argon, code_step, healthz = (
        median(password_times),
        median(argon_times),
        median(code_times),
        median(health_times),
    )
    return {
        "logins": logins,
        "argon2": params,
        "password_step_per_s": 1 / password_step,
        "code_step_per_s": 1 / code_step,
        "argon2_verify_per_s": 1 / argon,
        "healthz_per_s": 1 / healthz,
        "password_step_over_argon2": password_step / argon,
        "code_step_over_healthz": code_step / healthz,
        "password_step_s": password_step,
        "code_step_s": code_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=40, help="complete logins measured (one account each)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    result = run(args.logins)
    if args.json:
        emit_json(result)
        return
    p = result["argon2"]
    lines = [
        Line(
            "password step (POST /login): requests/s",
            f"{fmt_number(result['password_step_per_s'])}/s",
            f"{fmt_number(result['argon2_verify_per_s'])}/s (bare argon2id verify)",
            result["password_step_over_argon2"],
        ),
        Line(
            "  median time per request",
            fmt_seconds(result["password_step_s"]),
            fmt_seconds(1 / result["argon2_verify_per_s"]),
        ),
        Line(
            "code step (POST /login/code): requests/s",
            f"{fmt_number(result['code_step_per_s'])}/s",
            f"{fmt_number(result['healthz_per_s'])}/s (GET /healthz)",
            result["code_step_over_healthz"],
        ),
        Line("  median time per request", fmt_seconds(result["code_step_s"]), fmt_seconds(1 / result["healthz_per_s"])),
    ]
    notes = [
        f"argon2id time_cost={p['time_cost']}, memory_cost={p['memory_cost_kib']} KiB, parallelism={p['parallelism']} "
        "(argon2-cffi defaults = RFC 9106's second recommendation); SQLite, Flask test client, one process",
        f"{result['logins']} complete logins, one account each (5 codes per account per hour); medians",
        "the password step also writes the challenge, the SMS outbox row and two audit events; the code step "
        "consumes the code (compare-and-set), opens the server-side session and writes its audit event",
    ]
    print_results("bench/login.py: the two login steps", lines, notes)


if __name__ == "__main__":
    main()
