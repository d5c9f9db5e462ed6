"""The public pages: the home page, the language switch and the health check."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for

from models import db

from . import i18n
from .auth import safe_next

bp = Blueprint("main", __name__)


@bp.get("/")
def home():
    return render_template("index.html")


@bp.post("/langue")
def set_language():
    """Remembered on this browser, and on the account when someone is logged in (it then follows them)."""
    language = request.form.get("language")
    if language not in i18n.languages():
        abort(400)
    i18n.remember_language(language)
    return redirect(safe_next(request.form.get("next")) or url_for("main.home"))


@bp.get("/healthz")
def healthz():
    """For load balancers and monitoring: no login, no session, just whether the database answers."""
    try:
        opened = db.connect(reuse_if_open=True)
        try:
            db.execute_sql("SELECT 1").fetchone()
        finally:
            if opened:
                db.close()
    except Exception:
        current_app.logger.exception("health check: the database does not answer")
        return jsonify(status="unavailable", database="unavailable"), 503
    return jsonify(status="ok", database="ok")
