"""The outside world: mail (Flask-Mail), SMS (outbox or HTTP gateway) and the HIN identity provider.

Empty until the outbox dispatcher (issue 6) and the HIN login (issue 3) need them: today every message is an
outbox row written by workflows/notifications.py, and nothing leaves the machine.
"""
