"""Scheduled work under a single-leader lock: outbox dispatch, notifications, digests, expiries (issue 6).

Jobs stay thin: select due rows with a named query, fire triggers through workflows.engine, commit.
"""
