"""bench/delivery.py: documents per second up to `available` (FHIR API and service layer), and "Mes documents" for a
physician with 5,000 deliveries in a database of 1,000,000.

1. Throughput. A stay with one physician designated and authorized (active account): N DocumentReference POSTs
   through the Flask test client with a real DPI client token, each ending `available` (checked), then N documents
   through `workflows.documents.receive_document` directly. Baseline in the same run: GET /healthz on the same
   client (the framework's floor).
2. "Mes documents". `--rows` deliveries bulk-inserted (benchmark data: the engine is bypassed for the bulk) across
   many physicians, one of whom has 5,000 visible deliveries. The whole GET /documents request (session cookie,
   queries, template) median and p95; the page's data access (`Delivery.inbox_page`, materialized) against ONE
   hand-written SQL query returning the same rows and total, in the same process; SQL queries per page counted on
   page 1 and page 20.

    python bench/delivery.py                 # default sizes, a table
    python bench/delivery.py --json          # one JSON object on stdout
    python bench/delivery.py --quick         # small sizes (the test suite uses this)
    python bench/delivery.py --database-url postgresql://postgres@127.0.0.1:5432/test   # a scratch database there

It is a measurement, not a test: it exits 0 when a goal is missed, and says "goal missed" plainly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/delivery.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench._common import Goal, Line, emit_json, fmt_number, fmt_seconds, median, print_results  # noqa: E402
from bench.engine import scratch_database  # noqa: E402

FHIR_JSON = "application/fhir+json"
EXAMPLES = ROOT / "tests" / "fhir_examples"
GLN = "7601000123459"  # the practitioner of the example Bundle
PATIENT_ID = ("http://dpi.hcuge.ch/sid/patient", "P-1029384")
STAY_ID = ("http://dpi.hcuge.ch/sid/encounter", "S-2025-004711")
TARGET_DELIVERIES = 5_000
PAGE_SIZE = 25  # web/physician.py PAGE_SIZE
GOAL_DOCS_PER_S = 200.0
GOAL_P95_MS = 50.0
GOAL_RATIO = 2.0


# -- set-up ---------------------------------------------------------------------------------------------------------
class QueryCounter:
    """Counts the SQL statements sent through the peewee Database (it wraps `execute_sql` on the instance)."""

    def __init__(self, database):
        self.count = 0
        original = database.execute_sql

        def counting(sql, params=None, *args, **kwargs):
            self.count += 1
            return original(sql, params, *args, **kwargs)

        database.execute_sql = counting


def open_app(url: str, workdir: Path, **overrides):
    import models
    from models import schema
    from security import encryption
    from web import create_app

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
            "BLOB_DIR": str(workdir / "blobs"),
            "FHIR_RATE_LIMIT": "1000000 per minute",
            **overrides,
        }
    )
    return app, database


def active_physician_account(physician):
    """An active account for the physician, through the workflow (its profile completed first, as activation asks)."""
    from models import Account, Physician, PhysicianSpecialty, Role, Specialty
    from workflows import ACCOUNT, SYSTEM, Actor, engine

    Physician.update(email=f"dr{physician.id}@example.ch", practice_address="Rue du Rhône 1, 1204 Genève").where(
        Physician.id == physician.id
    ).execute()
    PhysicianSpecialty.create(physician=physician.id, specialty=Specialty.get(code="cardiology"))
    physician = Physician.get_by_id(physician.id)

    account = Account(
        username=f"dr{physician.id}", email=f"dr{physician.id}@example.ch", role=Role.PHYSICIAN, physician=physician
    )
    engine.create(ACCOUNT, account, "issue_login", SYSTEM)
    account.password_is_temporary = False
    engine.fire(ACCOUNT, account, "activate", Actor(Role.PHYSICIAN, account.id))
    return account


def example_pdf() -> str:
    bundle = json.loads((EXAMPLES / "transaction-discharge-summary.json").read_text())
    document = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    return document["content"][0]["attachment"]["data"]


def document_reference(n: int, pdf_b64: str) -> dict:
    return {
        "resourceType": "DocumentReference",
        "identifier": [{"system": "http://dpi.hcuge.ch/sid/document", "value": f"BENCH-{n:07d}"}],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "subject": {"identifier": {"system": PATIENT_ID[0], "value": PATIENT_ID[1]}},
        "author": [{"display": "Dr Jean Muller"}],
        "description": f"Lettre de sortie {n}",
        "content": [{"attachment": {"contentType": "application/pdf", "data": pdf_b64, "title": "Lettre de sortie"}}],
        "context": {"encounter": [{"identifier": {"system": STAY_ID[0], "value": STAY_ID[1]}}]},
    }


# -- 1. documents per second ---------------------------------------------------------------------------------------
def throughput(url: str, workdir: Path, documents: int, profile: str | None = None) -> dict:
    from models import Delivery, Document, Patient, Physician, Stay
    from web.fhir import create_client
    from workflows import documents as service
    from workflows.engine import Actor

    app, database = open_app(url, workdir)
    counter = QueryCounter(database)
    token = create_client("dpi-bench")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    # The example Bundle: patient, stay, practitioner, consent (designated + authorized) and a first document.
    response = client.post(
        "/fhir", data=(EXAMPLES / "transaction-discharge-summary.json").read_text(), headers=headers,
        content_type=FHIR_JSON,
    )  # fmt: skip
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    physician = Physician.get(Physician.gln == GLN)
    active_physician_account(physician)
    pdf_b64 = example_pdf()
    pdf = base64.b64decode(pdf_b64)
    bodies = [json.dumps(document_reference(n, pdf_b64)) for n in range(2 * documents + 10)]

    def post(n: int) -> None:
        answer = client.post("/fhir/DocumentReference", data=bodies[n], headers=headers, content_type=FHIR_JSON)
        assert answer.status_code == 201, answer.get_data(as_text=True)[:500]

    for n in range(5):  # warm-up (first template/code paths), not measured
        post(n)
        client.get("/healthz")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    queries_before = counter.count
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for n in range(10, 10 + documents):
        post(n)
    if profiler:
        profiler.disable()
    fhir_s = time.perf_counter() - started
    fhir_queries = (counter.count - queries_before) / documents

    patient = Patient.get((Patient.dpi_system == PATIENT_ID[0]) & (Patient.dpi_value == PATIENT_ID[1]))
    stay = Stay.get((Stay.dpi_system == STAY_ID[0]) & (Stay.dpi_value == STAY_ID[1]))
    dpi = Actor("dpi")
    queries_before = counter.count
    started = time.perf_counter()
    for n in range(documents):
        service.receive_document(
            dpi_system="http://dpi.hcuge.ch/sid/document",
            dpi_value=f"SERVICE-{n:07d}",
            patient=patient,
            stay=stay,
            type_code="18842-5",
            title=f"Lettre de sortie {n}",
            author="Dr Jean Muller",
            status="final",
            pdf=pdf,
            client="dpi-bench",
            actor=dpi,
        )
    service_s = time.perf_counter() - started
    service_queries = (counter.count - queries_before) / documents

    health = []
    for _ in range(max(documents, 50)):
        started = time.perf_counter()
        client.get("/healthz")
        health.append(time.perf_counter() - started)

    # Every document reached the physician's space.
    measured = Document.select().where(
        Document.dpi_value.startswith("BENCH-") | Document.dpi_value.startswith("SERVICE-")
    )
    states = {
        state: count
        for state, count in Delivery.select(Delivery.state, Delivery.id)
        .where(Delivery.document.in_(measured))
        .tuples()
        .iterator()
    }
    available = Delivery.select().where(Delivery.document.in_(measured) & (Delivery.state == "available")).count()
    expected = documents * 2 + 5
    assert available == expected, f"{available} of {expected} deliveries available ({states})"
    database.close()
    result = {
        "fhir_docs_per_s": documents / fhir_s,
        "service_docs_per_s": documents / service_s,
        "healthz_per_s": 1 / median(health),
        "fhir_queries_per_doc": fhir_queries,
        "service_queries_per_doc": service_queries,
        "documents": documents,
    }
    if profiler:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(profile).print_stats(45)
        result["profile"] = out.getvalue()
    return result


# -- 2. "Mes documents" -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def bulk_load(database):
    """SQLite: no fsync and an in-memory journal for the bulk load only; the settings are restored after it."""
    from models import is_postgres

    if is_postgres():
        yield
        return
    database.execute_sql("PRAGMA journal_mode=MEMORY")
    database.execute_sql("PRAGMA synchronous=OFF")
    try:
        yield
    finally:
        database.execute_sql("PRAGMA synchronous=NORMAL")
        database.execute_sql("PRAGMA journal_mode=WAL")


def insert_rows(database, model, columns: list[str], rows, chunk: int = 5_000) -> None:
    """insert_many in chunks, one transaction per chunk (benchmark data: no engine, no audit, no transition log)."""
    fields = [model._meta.fields[c] for c in columns]
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            with database.atomic():
                model.insert_many(batch, fields=fields).execute()
            batch = []
    if batch:
        with database.atomic():
            model.insert_many(batch, fields=fields).execute()


def build_inbox(database, rows: int, target: int) -> tuple[int, dict]:
    """`rows` deliveries: `target` visible ones for one physician, the rest spread over the others. Returns the
    target physician's id and the counts."""
    from models import Delivery, Document, DocumentType, Patient, Physician, Stay, gln_with_check_digit

    rng = random.Random(5)
    now = dt.datetime(2026, 6, 1, 12, 0)
    physicians = max(200, rows // 5_000)
    per_document = 10  # recipients per document: documents = rows / 10
    document_count = max(target, -(-rows // per_document))
    patient_count = max(1, document_count // 5)
    types = [t.id for t in DocumentType.select(DocumentType.id).order_by(DocumentType.id)]
    with bulk_load(database):
        insert_rows(
            database,
            Physician,
            ["gln", "last_name", "first_name", "email"],
            (
                (gln_with_check_digit(f"7609{n:08d}"), f"Médecin{n:05d}", "Anne", f"m{n}@example.ch")
                for n in range(physicians)
            ),
        )
        physician_ids = [p for (p,) in Physician.select(Physician.id).where(Physician.gln.startswith("7609")).tuples()]
        target_id = physician_ids[0]
        insert_rows(
            database,
            Patient,
            ["public_id", "dpi_system", "dpi_value", "family_name", "given_name", "created_at"],
            (
                (f"bp{n:09d}", "bench", f"P{n}", f"Patient{rng.randrange(10**6):06d}", "Jean", now)
                for n in range(patient_count)
            ),
        )
        first_patient = Patient.select(Patient.id).where(Patient.dpi_system == "bench").order_by(Patient.id).scalar()
        insert_rows(
            database,
            Stay,
            ["public_id", "dpi_system", "dpi_value", "patient", "kind", "created_at"],
            ((f"bs{n:09d}", "bench", f"S{n}", first_patient + n, "inpatient", now) for n in range(patient_count)),
        )
        first_stay = Stay.select(Stay.id).where(Stay.dpi_system == "bench").order_by(Stay.id).scalar()
        insert_rows(
            database,
            Document,
            [
                "public_id", "dpi_system", "dpi_value", "patient", "stay", "type", "title", "author", "status",
                "version_number", "size_bytes", "created_at", "updated_at",
            ],
            (
                (
                    f"bd{n:09d}", "bench", f"D{n}", first_patient + n // 5, first_stay + n // 5, types[n % 5],
                    f"Document {n}", "Dr Bench", "final", 1, 1000, now, now,
                )
                for n in range(document_count)
            ),
        )  # fmt: skip
        first_document = (
            Document.select(Document.id).where(Document.dpi_system == "bench").order_by(Document.id).scalar()
        )
        visible = ("available", "notified", "consulted")
        states = ("available", "notified", "consulted", "consulted", "consulted", "revoked", "consented", "withheld")

        def deliveries():
            n = 0
            # The target physician: `target` visible deliveries, one per document (a third unread).
            for d in range(target):
                at = now - dt.timedelta(minutes=d * 7 + rng.randrange(5))
                state = visible[d % 3]
                consulted = at + dt.timedelta(hours=1) if state == "consulted" else None
                yield (f"bv{n:011d}", first_document + d, target_id, state, 1, at, at, at, None, consulted, None)
                n += 1
            # Everyone else: per_document recipients per document, mixed states.
            others = physician_ids[1:]
            d = 0
            while n < rows:
                document = first_document + d % document_count
                for k in range(per_document):
                    if n >= rows:
                        break
                    physician = others[(d * per_document + k) % len(others)]
                    state = states[rng.randrange(len(states))]
                    at = now - dt.timedelta(minutes=rng.randrange(10**6))
                    available = at if state in visible else None
                    consulted = at if state == "consulted" else None
                    yield (f"bv{n:011d}", document, physician, state, 1, at, at, available, None, consulted, None)
                    n += 1
                d += 1

        insert_rows(
            database,
            Delivery,
            [
                "public_id", "document", "physician", "state", "version", "state_changed_at", "created_at",
                "available_at", "notified_at", "consulted_at", "revoked_reason",
            ],
            deliveries(),
        )  # fmt: skip
    database.execute_sql("ANALYZE")
    return target_id, {"physicians": physicians, "page_documents": document_count, "patients": patient_count}


BARE_SQL = """
SELECT d.id, d.public_id, d.document_id, d.physician_id, d.state, d.version, d.state_changed_at, d.created_at,
       d.available_at, d.notified_at, d.consulted_at, d.revoked_reason,
       doc.id, doc.public_id, doc.dpi_system, doc.dpi_value, doc.patient_id, doc.stay_id, doc.type_id, doc.title,
       doc.author, doc.status, doc.version_number, doc.replaces_id, doc.superseded_at, doc.recalled_at, doc.blob_id,
       doc.sha256, doc.size_bytes, doc.dpi_client, doc.created_at, doc.updated_at,
       p.id, p.public_id, p.dpi_system, p.dpi_value, p.family_name, p.given_name, p.birth_date, p.created_at,
       t.id, t.loinc, t.name_fr, t.name_en, t.communicable,
       (SELECT COUNT(*) FROM delivery AS c
        WHERE c.physician_id = {p} AND c.state IN ('available', 'notified', 'consulted')) AS total
FROM delivery AS d
JOIN document AS doc ON doc.id = d.document_id
JOIN patient AS p ON p.id = doc.patient_id
JOIN document_type AS t ON t.id = doc.type_id
WHERE d.physician_id = {p} AND d.state IN ('available', 'notified', 'consulted')
ORDER BY CASE WHEN d.consulted_at IS NULL THEN 0 ELSE 1 END, d.available_at DESC, d.id DESC
LIMIT {p} OFFSET {p}
"""


def page_benchmark(url: str, workdir: Path, rows: int, requests: int, profile: str | None = None) -> dict:
    from models import Delivery, Physician, db
    from security import sessions

    app, database = open_app(url, workdir)
    started = time.perf_counter()
    target_id, sizes = build_inbox(database, rows, min(TARGET_DELIVERIES, rows // 4))
    load_s = time.perf_counter() - started
    counter = QueryCounter(database)
    physician = Physician.get_by_id(target_id)
    account = active_physician_account(physician)
    client = app.test_client()
    client.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "bench", "password+sms"))
    visible = Delivery.visible_to(target_id).count()
    total_rows = Delivery.select().count()

    def get(page: int):
        answer = client.get(f"/documents?filtre=all&page={page}")
        assert answer.status_code == 200, answer.status
        return answer

    # Queries per page: page 1 and page 20 must cost the same.
    queries = {}
    for page in (1, 20):
        get(page)  # warm
        before = counter.count
        body = get(page).get_data(as_text=True)
        queries[page] = counter.count - before
        assert body.count("/documents/") >= PAGE_SIZE, "the page lists fewer documents than a full page"

    pages = max(1, visible // PAGE_SIZE)
    times = []
    for n in range(requests):
        page = 1 + (n * 7) % min(pages, 40)
        started = time.perf_counter()
        get(page)
        times.append(time.perf_counter() - started)

    # The page's data access (the named query the view calls, materialized) against one hand-written query.
    param = db.obj.param if hasattr(db, "obj") else "?"
    bare_sql = BARE_SQL.format(p=param)
    peewee_times, bare_times = [], []
    for n in range(requests):
        page = 1 + (n * 7) % min(pages, 40)
        started = time.perf_counter()
        found, total, _page = Delivery.inbox_page(target_id, page, PAGE_SIZE, sort="received", language="fr")
        [(d.document.title, d.document.patient.family_name, d.document.type.name_fr) for d in found]
        peewee_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare = database.execute_sql(bare_sql, (target_id, target_id, PAGE_SIZE, (page - 1) * PAGE_SIZE)).fetchall()
        bare_times.append(time.perf_counter() - started)
        if n < 3:  # the same rows, in the same order, and the same total
            assert [d.id for d in found] == [r[0] for r in bare], page
            assert total == bare[0][-1]
    profile_text = None
    if profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for n in range(50):
            get(1 + n % 20)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(profile).print_stats(40)
        profile_text = out.getvalue()
    database.close()
    times.sort()
    result = {
        "page_median_ms": statistics.median(times) * 1e3,
        "page_p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1e3,
        "data_over_bare_sql": median(peewee_times) / median(bare_times),
        "data_ms": median(peewee_times) * 1e3,
        "bare_sql_ms": median(bare_times) * 1e3,
        "queries_per_page": queries[1],
        "queries_page_1": queries[1],
        "queries_page_20": queries[20],
        "rows": total_rows,
        "target_deliveries": visible,
        "page_requests": requests,
        "bulk_load_s": load_s,
        **sizes,
    }
    if profile_text:
        result["page_profile"] = profile_text
    return result


# -- report ---------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite uses this)")
    parser.add_argument("--documents", type=int, help="documents per throughput side (default 300; quick 30)")
    parser.add_argument("--rows", type=int, help="deliveries in the database (default 1,000,000; quick 20,000)")
    parser.add_argument("--requests", type=int, help="GET /documents measured (default 200; quick 30)")
    parser.add_argument("--database-url", help="a PostgreSQL server to make a scratch database on (default SQLite)")
    parser.add_argument("--only", choices=("throughput", "page"), help="run one part")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cumulative",
        choices=("cumulative", "tottime"),
        help="print cProfile's top functions of each part, by cumulative (default) or own time",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    documents = args.documents or (30 if args.quick else 300)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    requests = args.requests or (30 if args.quick else 200)
    result: dict = {}
    if args.only in (None, "throughput"):
        with scratch_database(args.database_url) as url:
            result.update(throughput(url, Path(url_folder(url)), documents, args.profile))
    if args.only in (None, "page"):
        with scratch_database(args.database_url) as url:
            result.update(page_benchmark(url, Path(url_folder(url)), rows, requests, args.profile))
    result["backend"] = "postgresql" if args.database_url and not args.database_url.startswith("sqlite") else "sqlite"
    for key in ("profile", "page_profile"):
        if key in result:
            print(result.pop(key), file=sys.stderr)
    if args.json:
        emit_json(result)
        return
    print_results("bench/delivery.py: documents up to `available`, and “Mes documents”", table(result), notes(result))


def url_folder(url: str) -> str:
    """Where the app's instance folder and blobs go: beside the SQLite file, or a temporary folder."""
    if url.startswith("sqlite:///"):
        return str(Path(url[len("sqlite:///") :]).parent)
    import tempfile

    return tempfile.mkdtemp(prefix="myhug-bench-")


def table(r: dict) -> list[Line]:
    lines = []
    if "fhir_docs_per_s" in r:
        lines += [
            Line(
                "FHIR API: DocumentReference POST → available, docs/s",
                f"{fmt_number(r['fhir_docs_per_s'])}/s",
                f"{fmt_number(r['healthz_per_s'])}/s (GET /healthz)",
                r["fhir_docs_per_s"],
                Goal(">=", GOAL_DOCS_PER_S),
            ),
            Line(
                "  time per document (SQL statements)",
                f"{fmt_seconds(1 / r['fhir_docs_per_s'])} ({fmt_number(r['fhir_queries_per_doc'])})",
                fmt_seconds(1 / r["healthz_per_s"]),
            ),
            Line(
                "service layer: receive_document → available, docs/s",
                f"{fmt_number(r['service_docs_per_s'])}/s",
                f"{fmt_number(r['fhir_docs_per_s'])}/s (through the API)",
                r["service_docs_per_s"] / r["fhir_docs_per_s"],
            ),
            Line(
                "  time per document (SQL statements)",
                f"{fmt_seconds(1 / r['service_docs_per_s'])} ({fmt_number(r['service_queries_per_doc'])})",
            ),
        ]
    if "page_median_ms" in r:
        lines += [
            Line("GET /documents (whole request): median", f"{fmt_number(r['page_median_ms'])} ms"),
            Line(
                "GET /documents (whole request): p95",
                f"{fmt_number(r['page_p95_ms'])} ms",
                f"{fmt_number(GOAL_P95_MS)} ms (goal)",
                r["page_p95_ms"],
                Goal("<=", GOAL_P95_MS),
            ),
            Line(
                "page data: Delivery.inbox_page (2 queries, models)",
                f"{fmt_number(r['data_ms'])} ms",
                f"{fmt_number(r['bare_sql_ms'])} ms (1 hand-written query)",
                r["data_over_bare_sql"],
                Goal("<=", GOAL_RATIO),
            ),
            Line(
                "SQL queries per page (page 1 / page 20)",
                f"{r['queries_page_1']} / {r['queries_page_20']}",
                "",
                r["queries_page_20"] / r["queries_page_1"],
                Goal("<=", 1.0),
            ),
        ]
    return lines


def notes(r: dict) -> list[str]:
    out = [f"backend {r['backend']}, Flask test client, one process; docs/s ratio column = docs/s against the goal"]
    if "documents" in r:
        out.append(
            f"{r['documents']} documents each way, one PDF each (the example's), to a stay with one designated and "
            "authorized physician with an active account; every delivery checked `available` at the end"
        )
    if "rows" in r:
        out.append(
            f"{r['rows']:,} deliveries ({r['physicians']:,} physicians, {r['page_documents']:,} documents), "
            f"the measured physician has {r['target_deliveries']:,} visible; bulk-inserted with insert_many in "
            f"{fmt_seconds(r['bulk_load_s'])} (benchmark data: the engine, the audit trail and the transition log "
            "are bypassed; SQLite synchronous=OFF, journal in memory for the load only)"
        )
        out.append(
            f"{r['page_requests']} requests of GET /documents?filtre=all over pages 1-40 (session cookie, queries, "
            "template); the bare query returns the same rows, order and total (a scalar COUNT subquery) in one "
            "statement"
        )
    return out


if __name__ == "__main__":
    main()
