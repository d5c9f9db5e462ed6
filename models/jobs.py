"""What the scheduler did: one row per job run, written by the leader (jobs/runner.py), read by the dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from peewee import CharField, DateTimeField, TextField

from .db import BaseModel, utcnow


class JobRun(BaseModel):
    job = CharField()  # the name in jobs/tasks.py SCHEDULE
    node = CharField()  # host:pid of the process that ran it (the leader, or `run-once`)
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)
    outcome = CharField(default="running")  # running | ok | failed
    result = TextField(default="")  # the job's counts, as canonical JSON
    error = TextField(null=True)  # the exception's type and message (no data: jobs log no patient or secret)

    class Meta:
        indexes = ((("job", "started_at"), False),)

    @classmethod
    def latest(cls, job: str):
        return cls.select().where(cls.job == job).order_by(cls.started_at.desc(), cls.id.desc()).first()

    @classmethod
    def newest(cls):
        """The run started last by any node, or None: its `node` is the scheduler's leader as last seen. By id,
        the primary key, so that a month of runs is not sorted for one row."""
        return cls.select().order_by(cls.id.desc()).first()

    @classmethod
    def delete_started_before(cls, cutoff) -> int:
        """Delete the history of runs started before `cutoff`; how many."""
        return cls.delete().where(cls.started_at < cutoff).execute()

    @classmethod
    def last_successes(cls, jobs: Iterable[str]) -> dict[str, dt.datetime]:
        """When each of `jobs` last finished a successful run; jobs that never did are absent. One lookup per job
        down the (job, started_at) index (the latest success is at its top), never a pass over the whole history,
        which holds a row every ten seconds for a month: the metrics endpoint asks on every scrape."""
        finished: dict[str, dt.datetime] = {}
        for job in jobs:
            query = cls.select(cls.finished_at).where((cls.job == job) & (cls.outcome == "ok"))
            at = query.order_by(cls.started_at.desc()).limit(1).scalar()
            if at is not None:
                finished[job] = at
        return finished
