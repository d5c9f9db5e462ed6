"""The physician's space: "Mes documents" (today the list; the document page, "Mes patients", "Mon profil" and
"Aide" come with the documents issue)."""

from __future__ import annotations

from flask import Blueprint, g, render_template

from models import Delivery
from security import permissions

from .auth import permission_required

bp = Blueprint("physician", __name__)


@bp.get("/documents")
@permission_required(permissions.can_read_own_documents)
def documents():
    """Only the physician's own deliveries that reached their space; unread first."""
    g.no_store = True
    deliveries = list(Delivery.inbox(g.account.physician_id))
    return render_template("physician/documents.html", deliveries=deliveries)
