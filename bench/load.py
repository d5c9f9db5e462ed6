"""bench/load.py: physicians browsing while the DPI pushes documents, through nginx, on two nodes and on one node.

A cluster of its own is started with deploy/cluster.py (production settings, PostgreSQL, Redis, nginx with TLS, two
gunicorn nodes, one `flask jobs run`, a mail sink), in a scratch folder and a scratch database, on free ports. Then:

1. Set-up (not measured). Through the FHIR API, as the DPI: one stay per physician, each designating two physicians
   (its own and the next one) with the authorization to send. In the database: an active account per physician and
   a server-side session. The sessions are created directly (`security.sessions.start`, as the login does at its
   end) rather than by logging in: the password step costs one argon2id hash by design (~10 per second per core,
   measured by bench/login.py), SMS codes are limited per account and per address, and the login is not what this
   bench is about. One physician in ten asked for no e-mail; the others for one e-mail per batch of documents.
2. Load on two deployments in the same run, taking turns every `--slice` seconds (30) until each had `--duration`
   seconds (300): through nginx to both nodes, and through a second nginx address whose upstream is the first node
   alone (the baseline). Taking turns, not one after the other, because on a shared machine whatever else runs
   comes and goes: both deployments see the same machine. Meanwhile:
   - `--physicians` simulated physicians, each looping: GET "Mes documents", open one of the documents listed (the
     first opening fires `consult`), view its PDF, GET "Mes patients", with a think time after each page
     (uniform in `--think MIN MAX` seconds), each page from the deployment whose turn it is. A bounded asyncio
     client: one HTTP/1.1 connection per physician and deployment (its own cookies, as a browser), so at most one
     request per physician in flight;
   - the DPI sending `--rate` documents per second (open loop, at most 64 in flight; latency is counted from the
     scheduled instant, so a slow server cannot slow the clock down) with conditional updates
     `PUT /fhir/DocumentReference?identifier=…` — idempotent, so nginx may resend one to the other node and the DPI
     retries one that failed (up to 3 times; each retry is counted).
3. Drain and count (plain SQL on the database, and the mail sink's Maildir):
   - errors: requests that did not end 200 (201 for a new document) or raised, after the DPI's retries;
   - lost: an expected delivery (document the DPI got a 200/201 for × each designated physician) that is missing or
     not in "Mes documents", an expected notification that never came (a delivery of an "each" physician still
     unannounced once the jobs had time to notify: batch window + job periods), and e-mails the outbox recorded as
     sent that the mail server never received;
   - duplicated: two documents for one DPI identifier, two deliveries for one (document, physician), a delivery
     notified twice, and e-mails received more often than the outbox sent them (e-mails are counted for the whole
     run — one jobs process announces both deployments' documents — and with the two-node figures);
   - latency p50/p95/p99 per page (goal: p99 < 300 ms on every page).

    python bench/load.py                  # 200 physicians, 20 documents/s, 300 s per deployment: a table
    python bench/load.py --json           # one JSON object: errors, lost, duplicated, p99_ms per page, …
    python bench/load.py --quick          # 20 physicians, 5 documents/s, 15 s (the test suite)
    python bench/load.py --kill-during    # halfway, in a two-node turn: SIGKILL one node and the jobs leader
    python bench/load.py --backup-during  # two thirds of the way: `flask backup create`; after the drain, restored
                                          # into a fresh database and checked (audit verify, counts, every PDF)

Needs nginx, PostgreSQL and Redis on this machine: where one is missing it says which and exits 0 without measuring
(`make bench` goes on). It is a measurement, not a test: it exits 0 when a goal is missed, and says "goal missed"
plainly; it exits 1 if the cluster fails to start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.parser
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/load.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench._common import emit_json, fmt_number, render_table  # noqa: E402
from deploy import cluster  # noqa: E402

GOAL_P99_MS = 300.0
DPI_DOCUMENTS = "http://dpi.hcuge.ch/sid/document"
DPI_PATIENTS = "http://dpi.hcuge.ch/sid/patient"
DPI_STAYS = "http://dpi.hcuge.ch/sid/encounter"
DPI_CONSENTS = "http://dpi.hcuge.ch/sid/consent"
GLN_SYSTEM = "urn:oid:2.51.1.3"
FHIR_JSON = "application/fhir+json"
PAGES = {
    "documents": "Mes documents (GET /documents)",
    "document": "a document (GET /documents/<id>)",
    "pdf": "its PDF (GET /documents/<id>/voir)",
    "patients": "Mes patients (GET /patients)",
    "dpi": "DPI: PUT DocumentReference?identifier=",
}
DOCUMENT_LINK = re.compile(r'href="/documents/([A-Za-z0-9.\-]+)"')
NO_EMAIL_EVERY = 10  # one physician in ten chose "no e-mail"
DPI_IN_FLIGHT = 64
DPI_ATTEMPTS = 3
RESTART_DELAY_SECONDS = 5.0  # what systemd's RestartSec=5 gives the killed jobs process (docs/deploy.md)
NOTIFY_JOB_SECONDS = 30  # jobs/tasks.py: notify_new_documents every 30 s, dispatch_outbox every 10 s
DISPATCH_SECONDS = 10
OUTBOX_LEASE_SECONDS = 300  # workflows/outbox.py LEASE: a message a killed dispatcher held waits this long


# -- the cluster --------------------------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def scratch_layout(args) -> cluster.Layout:
    web_1, web_2, https, one_node, smtp = free_ports(5)
    return cluster.Layout(
        root=Path(tempfile.mkdtemp(prefix="myhug-load-")),
        web_ports=(web_1, web_2),
        https_port=https,
        one_node_port=one_node,
        smtp_port=smtp,
        postgres_url=args.postgres,
        database=f"myhug_load_{random.randrange(16**8):08x}",
        redis_url=args.redis,
        workers=args.workers,
        settings={"MYHUG_NOTIFY_BATCH_SECONDS": str(args.notify_batch)},
    )


# -- set-up ----------------------------------------------------------------------------------------------------------
def gln(n: int) -> str:
    from models import gln_with_check_digit

    return gln_with_check_digit(f"7609{n:08d}")


def stay_bundle(stay: int, physicians: int) -> dict:
    """Patient, stay, and two designated physicians with the authorization to send (the DPI's transaction)."""
    patient, encounter = f"urn:uuid:load-patient-{stay}", f"urn:uuid:load-stay-{stay}"
    entries = [
        _put(patient, "Patient", DPI_PATIENTS, f"LOAD-P-{stay}", {
            "name": [{"family": f"Charge{stay:04d}", "given": ["Patiente"]}], "birthDate": "1950-01-01",
        }),
        _put(encounter, "Encounter", DPI_STAYS, f"LOAD-S-{stay}", {
            "status": "finished", "subject": {"reference": patient},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "period": {"start": "2026-01-05T09:00:00+01:00", "end": "2026-01-09T11:00:00+01:00"},
        }),
    ]  # fmt: skip
    for n, physician in enumerate((stay, (stay + 1) % physicians)):
        entries.append(
            _put(f"urn:uuid:load-practitioner-{stay}-{n}", "Practitioner", GLN_SYSTEM, gln(physician), {
                "active": True, "name": [{"family": f"Médecin{physician:04d}", "given": ["Anne"], "prefix": ["Dre"]}],
            })
        )  # fmt: skip
        entries.append(
            _put(f"urn:uuid:load-consent-{stay}-{n}", "Consent", DPI_CONSENTS, f"LOAD-C-{stay}-{n}", {
                "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": patient},
                "provision": {
                    "type": "permit",
                    "actor": [{
                        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                             "code": "PRCP"}]},
                        "reference": {"identifier": {"system": GLN_SYSTEM, "value": gln(physician)}},
                    }],
                    "data": [{"meaning": "related", "reference": {"reference": encounter}}],
                },
            })
        )  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _put(full_url: str, kind: str, system: str, value: str, fields: dict) -> dict:
    resource = {"resourceType": kind, "identifier": [{"system": system, "value": value}], **fields}
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "PUT", "url": f"{kind}?identifier={system}|{value}"},
    }


def document_reference(identifier: str, stay: int, pdf_b64: str) -> dict:
    return {
        "resourceType": "DocumentReference",
        "identifier": [{"system": DPI_DOCUMENTS, "value": identifier}],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "subject": {"identifier": {"system": DPI_PATIENTS, "value": f"LOAD-P-{stay}"}},
        "author": [{"display": "Dr Jean Muller"}],
        "description": f"Lettre de sortie {identifier}",
        "content": [{"attachment": {"contentType": "application/pdf", "data": pdf_b64, "title": "Lettre de sortie"}}],
        "context": {"encounter": [{"identifier": {"system": DPI_STAYS, "value": f"LOAD-S-{stay}"}}]},
    }


def example_pdf() -> str:
    bundle = json.loads((ROOT / "tests" / "fhir_examples" / "transaction-discharge-summary.json").read_text())
    document = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    return document["content"][0]["attachment"]["data"]


def send_stays(base_url: str, token: str, cafile: Path, physicians: int) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=base_url, verify=ssl_context(cafile), headers=headers, timeout=60) as client:
        for stay in range(physicians):
            answer = client.post("/fhir", content=json.dumps(stay_bundle(stay, physicians)))
            if answer.status_code != 200:
                raise RuntimeError(f"set-up Bundle {stay}: {answer.status_code} {answer.text[:300]}")


def open_database(settings: Mapping[str, str]):
    """The cluster's database in this process, through the app's own factory (for the set-up through the
    workflows); argon2 at its cheapest: these accounts' temporary passwords are never typed."""
    from config import decode_data_key
    from security import passwords
    from web import create_app

    passwords.configure(time_cost=1, memory_cost=1024, parallelism=1)
    app = create_app(
        {
            "MYHUG_ENV": "production",
            "SECRET_KEY": settings["MYHUG_SECRET_KEY"],
            "DATA_KEY": decode_data_key(settings["MYHUG_DATA_KEY"]),
            "DATABASE_URL": settings["MYHUG_DATABASE_URL"],
            "PUBLIC_URL": settings["MYHUG_PUBLIC_URL"],
            "BLOB_DIR": settings["MYHUG_BLOB_DIR"],
            "LOG_LEVEL": "WARNING",
        }
    )
    return app


def physicians_with_sessions(app, physicians: int) -> list[str]:
    """An active account and a session per physician (see the module's docstring); returns the session tokens."""
    from bench.delivery import active_physician_account
    from models import NotificationMode, Physician, db
    from security import sessions

    tokens = []
    with app.app_context():
        db.connect(reuse_if_open=True)
        for n in range(physicians):
            physician = Physician.get(Physician.gln == gln(n))
            account = active_physician_account(physician)
            if n % NO_EMAIL_EVERY == NO_EMAIL_EVERY - 1:
                Physician.update(notification_mode=NotificationMode.NONE).where(Physician.id == physician.id).execute()
            tokens.append(sessions.start(account, "127.0.0.1", "bench/load.py", "password+sms"))
        db.close()
    return tokens


# -- the load -------------------------------------------------------------------------------------------------------
def ssl_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Phase:
    """What one deployment served during its run, as the clients saw it."""

    name: str
    prefix: str  # the DPI identifiers of this phase's documents
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # (page, status or exception) → count
    accepted: dict[str, int] = field(default_factory=dict)  # DPI identifier → stay, for every 200/201
    dpi_retries: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds into the run, what happened meanwhile)
    counts: dict = field(default_factory=dict)  # lost, duplicated and their parts, after the drain

    def record(self, page: str, seconds: float, status: int | None, ok: bool, reason: str = "") -> None:
        self.latencies[page].append(seconds)
        if not ok:
            self.errors[(page, reason or str(status))] += 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def p(self, page: str, q: float) -> float:
        return percentile(self.latencies.get(page, []), q) * 1000


async def timed_get(client, phase: Phase, page: str, path: str):
    started = time.perf_counter()
    try:
        answer = await client.get(path)
    except Exception as exc:  # refused, reset, timeout: an error like any other answer
        phase.record(page, time.perf_counter() - started, None, False, type(exc).__name__)
        return None
    phase.record(page, time.perf_counter() - started, answer.status_code, answer.status_code == 200)
    return answer if answer.status_code == 200 else None


@dataclass(frozen=True)
class Schedule:
    """Which deployment the clients address at each instant. They take turns every `slice` seconds: on a machine
    that other work shares, running one deployment after the other would compare that work's comings and goings
    too (measured here: the load average went from 0.7 to 11 between two consecutive 5-minute runs)."""

    start: float  # time.monotonic()
    slice: float
    deployments: int
    seconds_each: float

    @property
    def end(self) -> float:
        return self.start + self.deployments * self.seconds_each

    def current(self, at: float) -> int:
        return int((at - self.start) // self.slice) % self.deployments

    def middle_of_a_slice_of(self, deployment: int, fraction: float) -> float:
        """Seconds from the start to the middle of `deployment`'s slice nearest `fraction` of the run."""
        n = int(fraction * (self.end - self.start) // self.slice)
        n -= (n - deployment) % self.deployments
        return n * self.slice + self.slice / 2


async def physician(
    n: int, token: str, addresses: Sequence[str], context, phases: Sequence[Phase], schedule: Schedule, think
) -> None:
    """One physician's loop: Mes documents → a document → its PDF → Mes patients, thinking after each page; each
    page from the deployment whose turn it is (one connection to each, kept alive, as a browser keeps one)."""
    import httpx

    rng = random.Random(n)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=address, verify=context, cookies={"myhug_session": token}, limits=limits, timeout=30
                )
            )
            for address in addresses
        ]

        async def get(page: str, path: str):
            turn = schedule.current(time.monotonic())
            return await timed_get(clients[turn], phases[turn], page, path)

        async def think_then_continue() -> bool:
            await asyncio.sleep(rng.uniform(*think))
            return time.monotonic() < schedule.end

        await asyncio.sleep(rng.uniform(0, think[1]))  # arrivals spread, not 200 requests at the same instant
        while time.monotonic() < schedule.end:
            listing = await get("documents", "/documents")
            if not await think_then_continue():
                return
            ids = DOCUMENT_LINK.findall(listing.text) if listing is not None else []
            if ids:
                chosen = rng.choice(ids[:5])  # among the newest
                await get("document", f"/documents/{chosen}")
                if not await think_then_continue():
                    return
                await get("pdf", f"/documents/{chosen}/voir")
                if not await think_then_continue():
                    return
            await get("patients", "/patients")
            if not await think_then_continue():
                return


async def dpi(
    addresses: Sequence[str], token: str, context, phases: Sequence[Phase], schedule: Schedule, rate: float,
    physicians: int,
) -> None:  # fmt: skip
    """The DPI: `rate` documents per second on a fixed schedule, each to the next stay in turn, each through the
    deployment whose turn it is at its scheduled instant (and named with that deployment's prefix)."""
    import httpx

    pdf = example_pdf()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
    limits = httpx.Limits(max_connections=DPI_IN_FLIGHT, max_keepalive_connections=DPI_IN_FLIGHT)
    in_flight = asyncio.Semaphore(DPI_IN_FLIGHT)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=address, verify=context, headers=headers, limits=limits, timeout=30)
            )
            for address in addresses
        ]

        async def send(k: int, scheduled: float) -> None:
            turn = schedule.current(scheduled)
            phase, client = phases[turn], clients[turn]
            identifier, stay = f"{phase.prefix}{k:07d}", k % physicians
            body = json.dumps(document_reference(identifier, stay, pdf))
            path = f"/fhir/DocumentReference?identifier={DPI_DOCUMENTS}|{identifier}"
            async with in_flight:
                status, reason = None, ""
                for attempt in range(DPI_ATTEMPTS):
                    if attempt:
                        phase.dpi_retries += 1
                        await asyncio.sleep(attempt)
                    try:
                        answer = await client.put(path, content=body)
                        status, reason = answer.status_code, ""
                    except Exception as exc:  # the node died under it: the outcome is unknown, the PUT may be resent
                        status, reason = None, type(exc).__name__
                        continue
                    if status not in (502, 503, 504):
                        break
            ok = status in (200, 201)
            phase.record("dpi", time.monotonic() - scheduled, status, ok, reason)
            if ok:
                phase.accepted[identifier] = stay

        tasks, k = [], 0
        while (scheduled := schedule.start + k / rate) < schedule.end:
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(send(k, scheduled)))
            k += 1
        await asyncio.gather(*tasks)


def calibration_seconds(rounds: int = 3) -> float:
    """The best of `rounds` timings of one fixed pure-Python loop (10 million multiplications): how fast this
    machine's cores run Python today. Runs on machines, or days, that differ by this much are not comparable."""
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        sum(i * i for i in range(10_000_000))
        best = min(best, time.perf_counter() - started)
    return best


async def sample_load_average(schedule: Schedule, samples: list[float]) -> None:
    """The machine's 1-minute load average every 5 s: how much else ran beside the cluster."""
    while time.monotonic() < schedule.end:
        samples.append(os.getloadavg()[0])
        await asyncio.sleep(5)


async def run_load(
    phases: Sequence[Phase], addresses: Sequence[str], tokens: Sequence[str], dpi_token: str, cafile: Path, args,
    schedule: Schedule, disruptions, load_samples: list[float],
) -> None:  # fmt: skip
    context = ssl_context(cafile)
    think = tuple(args.think)
    workers = [physician(n, token, addresses, context, phases, schedule, think) for n, token in enumerate(tokens)]
    await asyncio.gather(
        dpi(addresses, dpi_token, context, phases, schedule, args.rate, len(tokens)),
        sample_load_average(schedule, load_samples),
        *workers,
        *disruptions,
    )


# -- disruptions --------------------------------------------------------------------------------------------------
async def kill_node_and_leader(layout: cluster.Layout, settings: Mapping[str, str], phase: Phase, after: float):
    """SIGKILL the second node (its whole process group: master and workers, as if the machine died) and the jobs
    leader; start a replacement jobs process RESTART_DELAY_SECONDS later, as systemd would."""
    await asyncio.sleep(after)
    node = layout.web_name(layout.web_ports[1])
    leader = "jobs-1"
    killed_at = time.time()
    for name in (node, leader):
        if not cluster.signal_group(layout, name, signal.SIGKILL):
            phase.events.append((after, f"{name} was not running: nothing killed"))
    phase.events.append((after, f"SIGKILL {node} (master and workers) and the jobs leader ({leader})"))
    phase.counts["killed_at"] = killed_at
    await asyncio.sleep(RESTART_DELAY_SECONDS)
    cluster.start_jobs(layout, settings, "jobs-2")
    phase.events.append((after + RESTART_DELAY_SECONDS, "replacement jobs process jobs-2 started"))


async def backup_during(layout: cluster.Layout, settings: Mapping[str, str], phase: Phase, after: float):
    """`flask backup create` while the load runs; the folder it wrote is restored and checked after the drain
    (`restore_and_check`)."""
    await asyncio.sleep(after)
    started = time.perf_counter()
    try:
        output = await asyncio.to_thread(cluster.flask, settings, "backup", "create", str(layout.root / "backups"))
    except cluster.ClusterError as error:
        phase.events.append((after, f"flask backup create FAILED: {str(error).splitlines()[-1]}"))
        phase.counts["backup"] = {"ok": False, "seconds": time.perf_counter() - started, "note": str(error)[-500:]}
        return
    seconds = time.perf_counter() - started
    folder = re.search(r"backup written: (\S+)", output).group(1)
    phase.events.append((after, f"flask backup create took {seconds:.1f} s under load"))
    phase.counts["backup"] = {"ok": True, "seconds": round(seconds, 2), "folder": folder}


def restore_and_check(layout: cluster.Layout, settings: Mapping[str, str], live: Census, folder: str) -> dict:
    """Restore the backup taken under load into a fresh database and blob folder, then check it independently of
    the restore's own checks: `flask audit verify` on the restored database, in its own process; the rows of every
    table against the manifest; the restored audit trail is the live one up to the backup's head (same hash at that
    event, same number of events before it), so nothing the backup held was lost or changed; every document's PDF
    decrypts with the data key and matches its SHA-256."""
    from config import decode_data_key
    from security.encryption import BlobStore
    from workflows.documents import blob_context

    target = dataclasses.replace(layout, database=f"{layout.database}_restored")
    blob_dir = layout.root / "restored-blobs"
    cluster.drop_database(target)
    cluster.create_database(target)
    url = target.database_url
    checks = {"restored": False}
    try:
        started = time.perf_counter()
        try:
            cluster.flask(settings, "backup", "restore", folder, "--blob-dir", str(blob_dir),
                          MYHUG_RESTORE_DATABASE_URL=url)  # fmt: skip
        except cluster.ClusterError as error:
            return {**checks, "problems": [str(error)[-1000:]]}
        checks.update(restored=True, restore_seconds=round(time.perf_counter() - started, 2))
        try:
            verified = cluster.flask(settings, "audit", "verify", MYHUG_DATABASE_URL=url, MYHUG_BLOB_DIR=str(blob_dir))
            checks["audit_verify"] = verified.strip().splitlines()[-1]
        except cluster.ClusterError as error:
            checks["audit_verify"] = f"FAILED: {str(error).splitlines()[-1]}"
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
        restored = Census(url)
        try:
            rows = {table: restored.rows(f'SELECT COUNT(*) FROM "{table}"')[0][0] for table in manifest["tables"]}
            head = manifest["audit_head"]
            documents = restored.rows("SELECT public_id, blob_id, sha256 FROM document WHERE blob_id IS NOT NULL")
        finally:
            restored.close()
        checks["tables_differing"] = {
            table: {"manifest": expected, "restored": rows[table]}
            for table, expected in manifest["tables"].items()
            if rows[table] != expected
        }
        checks["rows"] = sum(rows.values())
        [(live_hash, live_before)] = live.rows(
            "SELECT (SELECT hash FROM audit_event WHERE id = %s), (SELECT COUNT(*) FROM audit_event WHERE id <= %s)",
            (head["id"], head["id"]),
        )
        checks["audit_head_id"] = head["id"]
        checks["audit_prefix_of_live"] = live_hash == head["hash"] and live_before == rows["audit_event"]
        store, unreadable = BlobStore(blob_dir, decode_data_key(settings["MYHUG_DATA_KEY"])), 0
        for public_id, blob_id, sha256 in documents:
            try:
                pdf = store.get(blob_id, blob_context(SimpleNamespace(public_id=public_id)))
            except Exception:  # missing, or not decryptable with the key: the document would be lost
                unreadable += 1
                continue
            unreadable += hashlib.sha256(pdf).hexdigest() != sha256
        checks.update(documents=len(documents), documents_unreadable=unreadable)
        return checks
    finally:
        cluster.drop_database(target)


def backup_problems(backup: Mapping | None) -> list[str]:
    """Why the backup taken under load (if one was asked for) does not count as restored and consistent."""
    if backup is None:
        return []
    if not backup.get("ok"):
        return ["the backup under load failed"]
    checks = backup.get("restore") or {}
    problems = list(checks.get("problems", []))
    if not checks.get("restored"):
        return problems or ["the backup was not restored"]
    if not str(checks.get("audit_verify", "")).startswith("audit trail intact"):
        problems.append(f"audit verify on the restored database: {checks.get('audit_verify')}")
    if checks["tables_differing"]:
        problems.append(f"row counts differ from the manifest: {checks['tables_differing']}")
    if not checks["audit_prefix_of_live"]:
        problems.append("the restored audit trail is not the live one up to the backup's head")
    if checks["documents_unreadable"]:
        problems.append(f"{checks['documents_unreadable']} restored PDFs missing or unreadable")
    return problems


# -- counting -------------------------------------------------------------------------------------------------------
class Census:
    """Plain SQL on the cluster's database: what the bench checks, independent of the app's own code."""

    def __init__(self, url: str):
        import psycopg2

        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def physicians(self) -> dict[str, tuple[int, str]]:
        """GLN → (physician id, notification mode)."""
        return {g: (i, mode) for i, g, mode in self.rows("SELECT id, gln, notification_mode FROM physician")}

    def deliveries(self, prefix: str) -> dict[tuple[str, int], list[str]]:
        """(DPI identifier, physician id) → the states of its deliveries (one expected)."""
        found = defaultdict(list)
        for value, physician_id, state in self.rows(
            "SELECT d.dpi_value, v.physician_id, v.state FROM document d JOIN delivery v ON v.document_id = d.id "
            "WHERE d.dpi_system = %s AND d.dpi_value LIKE %s",
            (DPI_DOCUMENTS, prefix + "%"),
        ):
            found[(value, physician_id)].append(state)
        return found

    def duplicate_documents(self, prefix: str) -> int:
        return sum(
            count - 1
            for (count,) in self.rows(
                "SELECT COUNT(*) FROM document WHERE dpi_system = %s AND dpi_value LIKE %s GROUP BY dpi_value "
                "HAVING COUNT(*) > 1",
                (DPI_DOCUMENTS, prefix + "%"),
            )
        )

    def duplicate_notifications(self, prefix: str) -> int:
        """Deliveries that went through `notify` more than once (each extra time counts)."""
        return sum(
            count - 1
            for (count,) in self.rows(
                "SELECT COUNT(*) FROM transition_log t JOIN delivery v ON v.id = t.object_id "
                "JOIN document d ON d.id = v.document_id "
                "WHERE t.workflow = 'delivery' AND t.trigger = 'notify' AND d.dpi_value LIKE %s "
                "GROUP BY t.object_id HAVING COUNT(*) > 1",
                (prefix + "%",),
            )
        )

    def outbox_busy(self) -> int:
        return self.rows("SELECT COUNT(*) FROM outbox_message WHERE status IN ('pending', 'sending')")[0][0]

    def emails_resent(self) -> int:
        """E-mails sent on a later attempt. The mail sink never refuses, so each was interrupted: its dispatcher died
        after claiming it, and once the lease ran out another sent it. If the dead one had handed it to the server
        before its commit, the recipient has it twice: the outbox's at-least-once rule (workflows/outbox.py)."""
        return self.rows(
            "SELECT COUNT(*) FROM outbox_message WHERE channel = 'email' AND status = 'sent' AND attempts > 1"
        )[0][0]

    def emails_sent(self) -> Counter:
        return Counter(
            dict(
                self.rows(
                    "SELECT recipient, COUNT(*) FROM outbox_message WHERE channel = 'email' AND status = 'sent' "
                    "GROUP BY recipient"
                )
            )
        )

    def job_runs_by(self, node_suffix: str, since: float) -> int:
        return self.rows(
            "SELECT COUNT(*) FROM job_run WHERE node LIKE %s AND started_at >= to_timestamp(%s) AT TIME ZONE 'UTC'",
            ("%" + node_suffix, since),
        )[0][0]

    def close(self) -> None:
        self.connection.close()


def emails_received(mail_dir: Path) -> Counter:
    """Recipient → messages the mail sink accepted (its Maildir; aiosmtpd writes the envelope in X-RcptTo)."""
    received = Counter()
    parser = email.parser.BytesHeaderParser()
    for folder in ("new", "cur"):
        for path in (mail_dir / folder).glob("*") if (mail_dir / folder).exists() else []:
            with path.open("rb") as handle:
                headers = parser.parse(handle)
            for recipient in (headers.get("X-RcptTo") or "").split(","):
                if recipient.strip():
                    received[recipient.strip()] += 1
    return received


def expected_pairs(phase: Phase, physicians: Mapping[str, tuple[int, str]], count: int):
    """(identifier, physician id, notification mode) for every recipient of every accepted document."""
    for identifier, stay in phase.accepted.items():
        for n in (stay, (stay + 1) % count):
            physician_id, mode = physicians[gln(n)]
            yield identifier, physician_id, mode


def shortfall(census: Census, phase: Phase, count: int) -> dict[str, int]:
    """What has not (yet) arrived: deliveries missing or not visible, notifications not sent."""
    physicians = census.physicians()
    found = census.deliveries(phase.prefix)
    missing_deliveries = unannounced = 0
    for identifier, physician_id, mode in expected_pairs(phase, physicians, count):
        states = found.get((identifier, physician_id), [])
        if not any(state in ("available", "notified", "consulted") for state in states):
            missing_deliveries += 1
        elif mode == "each" and not any(state in ("notified", "consulted") for state in states):
            unannounced += 1
    return {"deliveries": missing_deliveries, "notifications": unannounced}


def drain(census: Census, phase: Phase, count: int, timeout: float) -> dict[str, int]:
    """Wait until every expected delivery is visible and notified (or opened) and the outbox is idle; what is still
    missing at `timeout` is lost."""
    deadline = time.monotonic() + timeout
    while True:
        missing = shortfall(census, phase, count)
        busy = census.outbox_busy()
        if (not any(missing.values()) and not busy) or time.monotonic() >= deadline:
            return {**missing, "outbox_busy": busy}
        time.sleep(2)


def email_balance(before_sent: Counter, before_received: Counter, sent: Counter, received: Counter) -> dict[str, int]:
    """Per recipient, e-mails the outbox recorded as sent vs e-mails the server received, between two counts."""
    lost = duplicated = 0
    for recipient in set(sent) | set(received):
        delta_sent = sent[recipient] - before_sent[recipient]
        delta_received = received[recipient] - before_received[recipient]
        lost += max(0, delta_sent - delta_received)
        duplicated += max(0, delta_received - delta_sent)
    return {"lost": lost, "duplicated": duplicated, "sent": sum(sent.values()) - sum(before_sent.values())}


def log_lines(access_log: Path) -> list[str]:
    return access_log.read_text().splitlines() if access_log.exists() else []


def served_by_node(access_log: Path, since_line: int) -> Counter:
    """Upstream answers per node in one of nginx's logs from line `since_line` on (a request resent to the other
    node names both)."""
    nodes = Counter()
    for line in log_lines(access_log)[since_line:]:
        match = re.search(r' upstream="([^"]*)"', line)
        if match:
            for address in match.group(1).split(","):
                nodes[address.strip().rsplit(":", 1)[-1]] += 1
    return nodes


# -- the run ----------------------------------------------------------------------------------------------------------
def drain_timeout(args, killed: bool) -> float:
    """The batch window, then the notice job and the dispatcher's periods, with a margin; after a kill, messages
    the dead dispatcher had claimed wait for their lease to expire."""
    base = args.notify_batch + NOTIFY_JOB_SECONDS + 2 * DISPATCH_SECONDS + 60
    return base + (OUTBOX_LEASE_SECONDS + DISPATCH_SECONDS if killed else 0)


def measure(args, layout: cluster.Layout) -> dict:
    progress(f"starting a cluster in {layout.root} (database {layout.database})")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its progress is not the result (--json: one line on stdout)
            dpi_token = cluster.start(layout, demo=False)
        settings = cluster.read_env_file(layout.env_file)
        return run_phases(args, layout, settings, dpi_token)
    finally:
        cluster.stop(layout)
        if not args.keep:
            cluster.drop_database(layout)
            shutil.rmtree(layout.root, ignore_errors=True)
        else:
            progress(f"kept: {layout.root}, database {layout.database}")


def run_phases(args, layout: cluster.Layout, settings: Mapping[str, str], dpi_token: str) -> dict:
    cafile = layout.tls_dir / "cert.pem"
    progress(f"set-up: {args.physicians} physicians, their stays and sessions")
    send_stays(layout.public_url, dpi_token, cafile, args.physicians)
    app = open_database(settings)
    tokens = physicians_with_sessions(app, args.physicians)
    census = Census(layout.database_url)
    phases = [Phase("two nodes", "LOAD-2N-"), Phase("one node", "LOAD-1N-")]
    addresses = [f"https://127.0.0.1:{port}" for port in (layout.https_port, layout.one_node_port)]
    logs = [layout.logs / "nginx-access.log", layout.logs / "nginx-access-one-node.log"]
    try:
        drain(census, Phase("set-up", "SETUP-"), args.physicians, timeout=drain_timeout(args, False))
        calibration = calibration_seconds()
        sent, received = census.emails_sent(), emails_received(layout.mail_dir)
        log_starts = [len(log_lines(log)) for log in logs]  # the set-up's requests are not the load's
        schedule = Schedule(time.monotonic() + 1, args.slice, len(phases), args.duration)
        disruptions = []
        if args.kill_during:
            disruptions.append(
                kill_node_and_leader(layout, settings, phases[0], schedule.middle_of_a_slice_of(0, 0.5) + 1)
            )
        if args.backup_during:
            disruptions.append(backup_during(layout, settings, phases[0], 2 * len(phases) * args.duration / 3 + 1))
        progress(
            f"load: {args.duration:.0f} s on each deployment, taking turns every {args.slice:.0f} s: two nodes "
            f"({addresses[0]}), one node ({addresses[1]})"
        )
        started, client_cpu, load_samples = time.time(), time.process_time(), []
        asyncio.run(run_load(phases, addresses, tokens, dpi_token, cafile, args, schedule, disruptions, load_samples))
        client_cpu = time.process_time() - client_cpu
        killed = "killed_at" in phases[0].counts
        progress("draining: deliveries, notices, e-mails")
        for phase in phases:
            missing = drain(census, phase, args.physicians, drain_timeout(args, killed))
            phase.counts.update(
                lost_deliveries=missing["deliveries"],
                lost_notifications=missing["notifications"],
                outbox_still_busy=missing["outbox_busy"],
                duplicated_documents=census.duplicate_documents(phase.prefix),
                duplicated_deliveries=sum(
                    len(states) - 1 for states in census.deliveries(phase.prefix).values() if len(states) > 1
                ),
                duplicated_notifications=census.duplicate_notifications(phase.prefix),
            )
        for phase, log, since in zip(phases, logs, log_starts, strict=True):
            phase.counts["served_by_node"] = dict(served_by_node(log, since))
        if killed:
            phases[0].counts["jobs_runs_after_kill_by_replacement"] = census.job_runs_by(":jobs-2", started)
        backup = phases[0].counts.get("backup")
        if backup and backup["ok"]:
            progress("restoring the backup taken under load into a fresh database, and checking it")
            backup["restore"] = restore_and_check(layout, settings, census, backup["folder"])
        emails = email_balance(sent, received, census.emails_sent(), emails_received(layout.mail_dir))
        emails["resent_after_interruption"] = census.emails_resent()
        machine = {
            "cpus": os.cpu_count(),
            "client_cpu_s": round(client_cpu, 1),
            "load_average_mean": round(sum(load_samples) / max(1, len(load_samples)), 2),
            "load_average_max": round(max(load_samples, default=0.0), 2),
            "python_loop_s": round(calibration, 2),
        }
        return report_payload(args, phases, emails, machine)
    finally:
        census.close()


def totals(phase: Phase, emails: Mapping[str, int] | None = None) -> dict:
    """errors, lost, duplicated and p99 per page of one deployment; e-mails (sent by the one jobs process for both
    deployments' documents) count with the deployment under test."""
    c, emails = phase.counts, emails or {"lost": 0, "duplicated": 0}
    return {
        "errors": phase.error_count,
        "lost": c["lost_deliveries"] + c["lost_notifications"] + emails["lost"],
        "duplicated": (
            c["duplicated_documents"]
            + c["duplicated_deliveries"]
            + c["duplicated_notifications"]
            + emails["duplicated"]
        ),
        "p99_ms": {page: round(phase.p(page, 99), 1) for page in PAGES},
        "p95_ms": {page: round(phase.p(page, 95), 1) for page in PAGES},
        "p50_ms": {page: round(phase.p(page, 50), 1) for page in PAGES},
        "requests": {page: len(phase.latencies.get(page, [])) for page in PAGES},
        "documents": len(phase.accepted),
        "dpi_retries": phase.dpi_retries,
        "detail": {k: v for k, v in phase.counts.items() if k not in ("killed_at", "backup")},
        "error_kinds": {f"{page}:{reason}": n for (page, reason), n in sorted(phase.errors.items())},
    }


def report_payload(args, phases: Sequence[Phase], emails: Mapping[str, int], machine: Mapping) -> dict:
    two, one = phases
    payload = totals(two, emails)
    payload.update(
        one_node=totals(one),
        emails=dict(emails),
        machine=dict(machine),
        physicians=args.physicians,
        documents_per_s=args.rate,
        seconds=args.duration,
        slice_seconds=args.slice,
        events=[f"t+{at:.0f} s: {text}" for at, text in sorted(two.events)],
        kill_during=bool(args.kill_during),
        backup_during=two.counts.get("backup"),
        backup_problems=backup_problems(two.counts.get("backup")),
    )
    return payload


# -- output -----------------------------------------------------------------------------------------------------------
def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{fmt_number(value)} ms"


def nodes_text(served: Mapping[str, int]) -> str:
    return ", ".join(f":{port} {count}" for port, count in sorted(served.items())) or "-"


def print_backup(backup: Mapping, problems: Sequence[str]) -> None:
    checks = backup.get("restore") or {}
    if checks.get("restored"):
        print(
            f"  - the backup taken under load ({fmt_number(backup['seconds'])} s), restored into a fresh database in "
            f"{fmt_number(checks['restore_seconds'])} s: {checks['audit_verify']} (`flask audit verify`, head at event "
            f"{checks['audit_head_id']}, the live trail's own up to there: "
            f"{'yes' if checks['audit_prefix_of_live'] else 'NO'}); {checks['rows']} rows, "
            f"{len(checks['tables_differing'])} tables differing from the manifest; {checks['documents']} PDFs "
            f"decrypted, {checks['documents_unreadable']} unreadable"
        )
    for problem in problems:
        print(f"  - BACKUP: {problem}")


def print_report(r: dict) -> None:
    one = r["one_node"]
    print(
        f"\nbench/load.py: {r['physicians']} physicians browsing while the DPI sends "
        f"{fmt_number(r['documents_per_s'])} documents/s, through nginx (TLS) on PostgreSQL: two nodes and one node "
        f"taking turns every {fmt_number(r['slice_seconds'])} s, {fmt_number(r['seconds'])} s each\n"
    )
    columns = ("page (requests: 2 nodes / 1 node)", "2 nodes p50", "p95", "p99", "1 node p50", "p95", "p99",
               "goal p99", "met?")  # fmt: skip
    rows, missed = [], []
    for page, label in PAGES.items():
        p99 = r["p99_ms"][page]
        met = not math.isnan(p99) and p99 < GOAL_P99_MS
        if not met:
            missed.append(f"{label} p99")
        rows.append([
            f"{label} ×{r['requests'][page]}/{one['requests'][page]}", ms(r["p50_ms"][page]), ms(r["p95_ms"][page]),
            ms(p99), ms(one["p50_ms"][page]), ms(one["p95_ms"][page]), ms(one["p99_ms"][page]),
            f"< {fmt_number(GOAL_P99_MS)} ms", "yes" if met else "NO: goal missed",
        ])  # fmt: skip
    print(render_table(rows, columns))
    print()
    rows = []
    for key, label in (("errors", "errors (after the DPI's retries)"), ("lost", "lost"), ("duplicated", "duplicated")):
        met = r[key] == 0
        if not met:
            missed.append(f"{key} (two nodes)")
        rows.append([label, str(r[key]), str(one[key]), "0", "yes" if met else "NO: goal missed"])
    for key in (
        "lost_deliveries", "lost_notifications", "duplicated_documents", "duplicated_deliveries",
        "duplicated_notifications",
    ):  # fmt: skip
        rows.append([f"  {key.replace('_', ' ')}", str(r["detail"][key]), str(one["detail"][key]), "", ""])
    emails = r["emails"]
    rows.append(["  e-mails lost / duplicated (whole run)", f"{emails['lost']} / {emails['duplicated']}", "", "", ""])
    rows.append(["e-mails sent (whole run, all received once?)", str(emails["sent"]), "", "", ""])
    rows.append(["  of which resent after an interrupted send", str(emails["resent_after_interruption"]), "", "", ""])
    rows.append(["documents accepted by the portal", str(r["documents"]), str(one["documents"]), "", ""])
    rows.append(["DPI retries (resent after 502/503/504 or a cut)", str(r["dpi_retries"]), str(one["dpi_retries"]),
                 "", ""])  # fmt: skip
    rows.append(["answers per node (nginx's logs)", nodes_text(r["detail"]["served_by_node"]),
                 nodes_text(one["detail"]["served_by_node"]), "", ""])  # fmt: skip
    print(render_table(rows, ("count", "2 nodes", "1 node", "goal", "met?")))
    for event in r["events"]:
        print(f"  - {event}")
    if emails["duplicated"] and emails["duplicated"] <= emails["resent_after_interruption"]:
        print(
            f"  - the {emails['duplicated']} duplicated e-mail(s): no more than were resent after an interrupted send, "
            "which is the outbox's at-least-once rule when a dispatcher dies between the server's acceptance and its "
            "own commit (workflows/outbox.py): one extra e-mail rather than one lost. They still count as duplicated."
        )
    if r["backup_during"] is not None:
        print_backup(r["backup_during"], r["backup_problems"])
        if r["backup_problems"]:
            missed.append("backup restored and consistent")
    if "jobs_runs_after_kill_by_replacement" in r["detail"]:
        runs = r["detail"]["jobs_runs_after_kill_by_replacement"]
        print(f"  - job runs recorded by the replacement jobs process: {runs}")
    machine = r["machine"]
    print(
        f"  - the machine: {machine['cpus']} CPUs shared by nginx, both nodes, PostgreSQL, the jobs, this client "
        f"({machine['client_cpu_s']} s of CPU) and whatever else ran: load average {machine['load_average_mean']} "
        f"on average, {machine['load_average_max']} at most; a fixed Python loop took {machine['python_loop_s']} s "
        "before the load (calibration: compare runs only where it is close)"
    )
    for name, report in (("two nodes", r), ("one node", one)):
        if report["error_kinds"]:
            print(f"  - errors ({name}): {', '.join(f'{k} ×{n}' for k, n in report['error_kinds'].items())}")
    print(f"\ngoal missed: {'; '.join(missed)}" if missed else "\nall goals met")


STARTED = time.monotonic()


def progress(text: str) -> None:
    print(f"[load {time.monotonic() - STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--physicians", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="documents per second from the DPI")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load per deployment")
    parser.add_argument("--slice", type=float, default=30.0, help="seconds before the deployments take turns")
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"))
    parser.add_argument("--notify-batch", type=int, default=120, help="MYHUG_NOTIFY_BATCH_SECONDS of the cluster")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers per node (default: the conf's)")
    parser.add_argument("--quick", action="store_true", help="20 physicians, 5 documents/s, 15 s (the test suite)")
    parser.add_argument("--kill-during", action="store_true", help="SIGKILL node 2 and the jobs leader halfway")
    parser.add_argument(
        "--backup-during",
        action="store_true",
        help="`flask backup create` two thirds of the way; restored and checked after the drain",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and database")
    parser.add_argument("--postgres", default=cluster.default_layout().postgres_url)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(physicians=20, rate=5.0, duration=15.0, slice=5.0, think=(0.5, 1.5), notify_batch=5)
    args = parser.parse_args(argv)
    if args.physicians < 2:
        parser.error("--physicians: at least 2 (each stay designates two of them)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layout = scratch_layout(args)
    missing = cluster.missing_prerequisites(layout)
    if missing:  # a machine without nginx or the services: said plainly, not a failure of the portal (`make bench`)
        shutil.rmtree(layout.root, ignore_errors=True)
        reason = "; ".join(missing)
        print(f"bench/load.py skipped: {reason}", file=sys.stderr)
        if args.json:
            emit_json({"skipped": reason})
        return 0
    try:
        result = measure(args, layout)
    except cluster.ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        emit_json(result)
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
