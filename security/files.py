"""File types checked by content, never by name or declared type."""

from __future__ import annotations

_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)

ID_COPY_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png"})


def sniff_type(data: bytes) -> str | None:
    """The MIME type that the first bytes prove, or None."""
    head = data[:16]
    for magic, mime in _SIGNATURES:
        if head.startswith(magic):
            return mime
    return None
