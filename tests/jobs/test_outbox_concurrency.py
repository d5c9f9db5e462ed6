"""Four dispatcher processes at once on one outbox and one SMTP server: every message leaves exactly once.

PostgreSQL is the case that matters (several nodes claim batches with FOR UPDATE SKIP LOCKED); SQLite (one writer,
a conditional UPDATE per row) runs the same test. The child processes start with the spawn method, so
`dispatch_until_empty` must be importable from this module.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

from models import OutboxMessage, db
from tests.conftest import TEST_DATA_KEY

PROCESSES = 4
MESSAGES = 2000


def dispatch_until_empty(url: str, key: bytes, smtp_port: int, instance: str, barrier, results) -> None:
    """A dispatcher process: its own app and connections; dispatch runs until one finds nothing to claim."""
    try:
        from jobs.tasks import dispatch_outbox
        from web import create_app

        app = create_app(
            {
                "TESTING": True,
                "INSTANCE_PATH": instance,
                "DATABASE_URL": url,
                "SECRET_KEY": "concurrency-test-secret-key-of-enough-length",
                "DATA_KEY": key,
                "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": smtp_port,
                "MAIL_USE_TLS": False,
                "MAIL_SUPPRESS_SEND": False,
            }
        )
        totals: Counter = Counter()
        barrier.wait(timeout=60)
        with app.app_context():
            while counts := dispatch_outbox(app.config):
                totals.update(counts)
        results.put(dict(totals))
    except Exception as exc:  # reported, so the test shows it instead of hanging
        results.put({"error": repr(exc)})


def queue(count: int) -> None:
    rows = [
        {
            "channel": "email",
            "template": "test",
            "recipient": f"dr{n % 50}@example.ch",
            "subject": f"outbox row {n}",
            "body": f"Bonjour (row {n})",
        }
        for n in range(count)
    ]
    with db.atomic():
        for start in range(0, count, 500):
            OutboxMessage.insert_many(rows[start : start + 500]).execute()


def test_four_dispatchers_send_every_message_exactly_once(database, tmp_path, smtp_server):
    queue(MESSAGES)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES + 1), ctx.Queue()
    database.close()
    workers = [
        ctx.Process(
            target=dispatch_until_empty,
            args=(database.url, TEST_DATA_KEY, smtp_server.port, str(tmp_path / f"i{n}"), barrier, results),
        )
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)  # every child has its app: time the dispatch alone
    started = time.perf_counter()
    per_process = [results.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=30)
    database.connect(reuse_if_open=True)
    print(f"\n{PROCESSES} dispatchers, {MESSAGES} e-mails ({database.url.split(':')[0]}): {elapsed:.1f} s")

    assert not [r for r in per_process if "error" in r], per_process
    received = Counter(m["Subject"] for m in smtp_server.mailbox.messages)
    assert len(smtp_server.mailbox.messages) == MESSAGES
    assert received == {f"outbox row {n}": 1 for n in range(MESSAGES)}
    assert sum(r.get("sent", 0) for r in per_process) == MESSAGES
    assert sum(1 for r in per_process if r.get("sent")) >= 2  # the work was shared, not done by one of them
    assert {status for (status,) in OutboxMessage.select(OutboxMessage.status).distinct().tuples()} == {"sent"}
    assert OutboxMessage.select().where(OutboxMessage.attempts != 1).count() == 0  # each row claimed once
