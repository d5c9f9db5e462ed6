"""Passwords, one-time codes, sessions, permissions, encryption at rest and the audit chain."""
