"""The catalogue of document types (DESIGN §5): administrators say which LOINC types may leave the hospital.

A type made communicable releases the documents withheld for that reason; made non-communicable, it stops the
documents still to come but recalls none already in "Mes documents" (recalling is the hospital's explicit act).
Both changes, and an added type, go through workflows/documents.py, which audits them.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from models import DocumentType
from security.permissions import is_administrator
from workflows import TransitionRefused, documents

from .admin import administrator, bp
from .auth import permission_required

# The reason codes of workflows.documents.add_document_type, and the field each one is about.
FIELD_OF = {"bad-loinc": "loinc", "type-exists": "loinc"}
FIELDS = ("loinc", "name_fr", "name_en")
LABELS = {
    "loinc": lazy_gettext("LOINC code"),
    "name_fr": lazy_gettext("Name in French"),
    "name_en": lazy_gettext("Name in English"),
}


def _page(typed: dict | None = None, errors: dict | None = None, status: int = 200):
    return (
        render_template(
            "admin/document_types.html",
            types=list(DocumentType.catalogue()),
            typed=typed or {},
            errors=errors or {},
            fields=FIELDS,
            labels=LABELS,
        ),
        status,
    )


@bp.get("/types-de-documents")
@permission_required(is_administrator)
def document_types():
    return _page()


@bp.post("/types-de-documents/<loinc>/communicable")
@permission_required(is_administrator)
def document_type_communicable(loinc: str):
    document_type = DocumentType.get_or_none(DocumentType.loinc == loinc)
    if document_type is None:
        abort(404)
    choice = request.form.get("communicable")
    if choice not in ("yes", "no"):
        abort(400)
    communicable = choice == "yes"
    moved = documents.set_type_communicable(document_type, communicable, actor=administrator())
    name = f"{document_type.name_fr} ({document_type.loinc})"
    if communicable:
        flash(
            ngettext(
                "%(name)s is communicable now; %(num)d waiting document went on its way.",
                "%(name)s is communicable now; %(num)d waiting documents went on their way.",
                moved,
                name=name,
            ),
            "success",
        )
    else:
        flash(
            _(
                "%(name)s is no longer communicable: new documents of this type stay in the hospital; those already "
                "made available stay available.",
                name=name,
            ),
            "success",
        )
    return redirect(url_for(".document_types", _anchor=f"type-{document_type.loinc}"), 303)


@bp.post("/types-de-documents")
@permission_required(is_administrator)
def add_document_type():
    typed = {name: request.form.get(name, "").strip()[:200] for name in FIELDS}
    communicable = request.form.get("communicable") == "yes"
    try:
        added = documents.add_document_type(**typed, communicable=communicable, actor=administrator())
    except TransitionRefused as refused:
        code = refused.reason.code
        if code == "name-required":
            errors = {name: _(refused.reason.text) for name in ("name_fr", "name_en") if not typed[name]}
        elif code in FIELD_OF:
            errors = {FIELD_OF[code]: _(refused.reason.text)}
        else:
            raise
        return _page({**typed, "communicable": communicable}, errors, 422)
    flash(_("%(name)s (%(loinc)s) was added to the catalogue.", name=added.name_fr, loinc=added.loinc), "success")
    return redirect(url_for(".document_types", _anchor=f"type-{added.loinc}"), 303)
