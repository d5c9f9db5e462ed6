"""The outside world: the SMS gateway (sms.py: outbox or HTTP) and the HIN identity provider (hin.py, OpenID
Connect). Mail through Flask-Mail arrives with the outbox dispatcher (issue 6)."""
