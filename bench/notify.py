"""bench/notify.py: notifying physicians of new documents, queued, sent to a real SMTP server, recorded.

`--deliveries` deliveries (default 100,000) become available across `--physicians` physicians (default 5,000) with
mixed preferences (half "each", a third "digest", the rest "none"). Measured: the jobs as the scheduler runs them —
`queue_new_document_notices`, `queue_digests`, then the outbox dispatcher until nothing is due — against an aiosmtpd
server in another process that counts what it accepts. One e-mail per notified physician is expected, every
announced delivery `notified`, the "none" physicians' deliveries still `available`: the run fails if not.

Baseline in the same run: the same number of messages sent with bare smtplib over one connection to the same
server (the floor set by SMTP itself). Memory: the resident set's growth during the measured phase, sampled every
20 ms, for the full size and for a fifth of the deliveries (same physicians): flat means the ratio stays near 1.

    python bench/notify.py                 # default sizes, a table
    python bench/notify.py --json          # one JSON object: seconds, messages_per_s, peak_mib, …
    python bench/notify.py --quick         # small sizes (the test suite uses this)

It is a measurement, not a test: it exits 0 when a goal is missed, and says "goal missed" plainly.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import smtplib
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/notify.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench._common import Goal, Line, emit_json, fmt_bytes, fmt_number, fmt_seconds, print_results, rss_bytes  # noqa: E402
from bench.delivery import bulk_load, insert_rows, open_app, url_folder  # noqa: E402
from bench.engine import scratch_database  # noqa: E402

GOAL_SECONDS = 60.0
GOAL_MEMORY_RATIO = 1.5  # peak growth at full size over a fifth of the deliveries
NOISE_MIB = 4.0  # resident-set growth below this is the allocator's noise: counted as this much in the ratio
MODES = ("each", "each", "digest", "none", "each", "digest")  # 1/2 each, 1/3 digest, 1/6 none


# -- the SMTP server, in its own process so that it does not share our interpreter lock ------------------------------
def _serve_smtp(port: int, accepted, ready) -> None:
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO

    class Counter:
        async def handle_DATA(self, server, session, envelope):
            with accepted.get_lock():
                accepted.value += 1
            return "250 Message accepted for delivery"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    threading.Event().wait()  # until terminated


@contextlib.contextmanager
def smtp_server():
    from tests.smtp import free_port

    port = free_port()
    accepted, ready = multiprocessing.Value("i", 0), multiprocessing.Event()
    process = multiprocessing.Process(target=_serve_smtp, args=(port, accepted, ready), daemon=True)
    process.start()
    if not ready.wait(10):
        raise RuntimeError("the SMTP server did not start")
    try:
        yield port, accepted
    finally:
        process.terminate()
        process.join(5)


class PeakRss:
    """The resident set's highest growth over its value at the start, sampled in a thread."""

    def __init__(self, every: float = 0.02):
        self.every, self.start, self.peak = every, rss_bytes(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_bytes() - self.start)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() - self.start)


# -- data -----------------------------------------------------------------------------------------------------------
def build(database, physicians: int, deliveries: int, now: dt.datetime) -> dict[str, int]:
    """Physicians with mixed preferences and `deliveries` available deliveries spread evenly over them, all
    unannounced (benchmark data: bulk-inserted, the engine is bypassed)."""
    from models import Delivery, Document, DocumentType, Patient, Physician, Stay, gln_with_check_digit

    per_physician = -(-deliveries // physicians)
    type_id = DocumentType.select(DocumentType.id).where(DocumentType.communicable == True).scalar()  # noqa: E712
    with bulk_load(database):
        insert_rows(
            database,
            Physician,
            ["gln", "last_name", "first_name", "email", "notification_mode"],
            (
                (gln_with_check_digit(f"7608{n:08d}"), f"Médecin{n:05d}", "Anne", f"m{n}@example.ch", MODES[n % 6])
                for n in range(physicians)
            ),
        )
        patient = Patient.create(dpi_system="bench", dpi_value="P1", family_name="Bench", given_name="Jean")
        stay = Stay.create(dpi_system="bench", dpi_value="S1", patient=patient, kind="inpatient")
        insert_rows(
            database,
            Document,
            ["public_id", "dpi_system", "dpi_value", "patient", "stay", "type", "title", "status", "created_at"],
            (
                (f"nd{n:07d}", "bench", f"D{n}", patient.id, stay.id, type_id, f"Document {n}", "final", now)
                for n in range(per_physician)
            ),
        )
        first_document = Document.select(Document.id).order_by(Document.id).scalar()
        ids = [p for (p,) in Physician.select(Physician.id).order_by(Physician.id).tuples()]

        def rows():
            for n in range(deliveries):
                physician, document = ids[n % physicians], first_document + n // physicians
                at = now - dt.timedelta(minutes=10 + n % 50)
                yield (f"nv{n:09d}", document, physician, "available", 4, at, at, at)

        insert_rows(
            database,
            Delivery,
            [
                "public_id",
                "document",
                "physician",
                "state",
                "version",
                "state_changed_at",
                "created_at",
                "available_at",
            ],
            rows(),
        )
    database.execute_sql("ANALYZE")
    return {mode: Physician.select().where(Physician.notification_mode == mode).count() for mode in set(MODES)}


# -- the measured phase ---------------------------------------------------------------------------------------------
def notify_all(app, now: dt.datetime) -> dict:
    from jobs.tasks import dispatch_outbox
    from workflows.notices import queue_digests, queue_new_document_notices

    with app.app_context(), PeakRss() as memory:
        started, cpu_started = time.perf_counter(), time.process_time()
        queued = queue_new_document_notices(now, dt.timedelta(minutes=2))
        queued += queue_digests(now, hour=0)  # the day's digest hour has passed
        queued_s = time.perf_counter() - started
        sent = 0
        while True:
            counts = dispatch_outbox(app.config)
            sent += counts.get("sent", 0)
            if not counts.get("sent") and not counts.get("retry"):
                break
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "queue_seconds": queued_s,
        "queued": queued,
        "sent": sent,
        "peak": memory.peak,
    }


def bare_smtp(port: int, messages: int) -> float:
    """Seconds to send `messages` notice-sized e-mails over one smtplib connection (the floor)."""
    body = "Bonjour,\n\n" + "Un nouveau document vous attend dans « Mes documents » sur myHUG.\n" * 12
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(messages):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "myhug@hcuge.ch", f"m{n}@example.ch", "myHUG"
            message.set_content(body)
            smtp.send_message(message)
    return time.perf_counter() - started


def run(url: str, physicians: int, deliveries: int) -> dict:
    from models import Delivery, OutboxMessage, Physician

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with smtp_server() as (port, accepted):
        app, database = open_app(
            url,
            Path(url_folder(url)),
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=port,
            MAIL_USE_TLS=False,
            MAIL_SUPPRESS_SEND=False,
        )
        modes = build(database, physicians, deliveries, now)
        result = notify_all(app, now)
        expected = modes["each"] + modes["digest"]
        notified = Delivery.select().where(Delivery.state == "notified").count()
        waiting = Delivery.select().where(Delivery.state == "available").count()
        silent = (
            Delivery.select()
            .join(Physician, on=(Delivery.physician == Physician.id))
            .where(Physician.notification_mode == "none")
            .count()
        )
        assert result["queued"] == expected, f"{result['queued']} notices queued, {expected} expected"
        assert accepted.value == expected, f"the server accepted {accepted.value} e-mails, {expected} expected"
        assert OutboxMessage.select().where(OutboxMessage.status == "sent").count() == expected
        assert waiting == silent, f"{waiting} deliveries still available, {silent} of physicians without e-mail"
        assert notified + waiting == deliveries
        bare = bare_smtp(port, expected)
        database.close()
    return {**result, "messages": expected, "notified": notified, "bare_seconds": bare, "modes": modes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite uses this)")
    parser.add_argument("--physicians", type=int, help="physicians (default 5,000; quick 300)")
    parser.add_argument("--deliveries", type=int, help="deliveries becoming available (default 100,000; quick 6,000)")
    parser.add_argument("--database-url", help="a PostgreSQL server to make a scratch database on (default SQLite)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    physicians = args.physicians or (300 if args.quick else 5_000)
    deliveries = args.deliveries or (6_000 if args.quick else 100_000)
    with scratch_database(args.database_url) as url:
        full = run(url, physicians, deliveries)
    with scratch_database(args.database_url) as url:
        fifth = run(url, physicians, max(physicians, deliveries // 5))
    result = {
        "seconds": full["seconds"],
        "messages_per_s": full["messages"] / full["seconds"],
        "peak_mib": full["peak"] / 2**20,
        "peak_mib_fifth": fifth["peak"] / 2**20,
        "queue_seconds": full["queue_seconds"],
        "cpu_seconds": full["cpu_seconds"],
        "load_average": os.getloadavg()[0],
        "messages": full["messages"],
        "deliveries": deliveries,
        "physicians": physicians,
        "notified": full["notified"],
        "bare_smtp_seconds": full["bare_seconds"],
        "backend": "postgresql" if args.database_url and not args.database_url.startswith("sqlite") else "sqlite",
    }
    if args.json:
        emit_json(result)
        return
    print_results("bench/notify.py: notifications of new documents", table(result), notes(result))


def table(r: dict) -> list[Line]:
    memory_ratio = max(r["peak_mib"], NOISE_MIB) / max(r["peak_mib_fifth"], NOISE_MIB)
    return [
        Line(
            f"{fmt_number(r['deliveries'])} deliveries → notices queued, sent, recorded",
            fmt_seconds(r["seconds"]),
            f"goal {fmt_number(GOAL_SECONDS)} s",
            r["seconds"],
            Goal("<=", GOAL_SECONDS),
        ),
        Line("  of which queuing the notices", fmt_seconds(r["queue_seconds"])),
        Line(
            "  CPU time of this process (what other processes on the machine do not change)",
            fmt_seconds(r["cpu_seconds"]),
            f"load average {fmt_number(r['load_average'])} on {os.cpu_count()} cores",
        ),
        Line(
            "messages per second (one per notified physician)",
            f"{fmt_number(r['messages_per_s'])}/s",
            f"{fmt_number(r['messages'] / r['bare_smtp_seconds'])}/s (bare smtplib, one connection)",
            (r["messages"] / r["bare_smtp_seconds"]) / r["messages_per_s"],
        ),
        Line(
            "peak memory growth (full size / a fifth of the deliveries)",
            fmt_bytes(r["peak_mib"] * 2**20),
            fmt_bytes(r["peak_mib_fifth"] * 2**20),
            memory_ratio,
            Goal("<=", GOAL_MEMORY_RATIO),
        ),
    ]


def notes(r: dict) -> list[str]:
    return [
        f"backend {r['backend']}; {fmt_number(r['physicians'])} physicians (1/2 each, 1/3 digest, 1/6 none); "
        f"{fmt_number(r['messages'])} e-mails accepted by the server (counted there), "
        f"{fmt_number(r['notified'])} deliveries notified",
        "the seconds' ratio column is seconds against the goal; the messages' ratio is bare smtplib's rate over ours",
        f"memory: resident-set growth during the measured phase, sampled every 20 ms; growth under {NOISE_MIB:g} MiB "
        "counts as that much in the ratio (allocator noise)",
    ]


if __name__ == "__main__":
    main()
