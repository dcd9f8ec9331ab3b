"""The Labelbox adapter's error: what cannot be read from an export, and where."""

from __future__ import annotations


class ExportError(ValueError):
    """The export (or one field of it) cannot be read. ``field`` is the path inside the row when
    the error is about one field; the loop that catches it adds the file, line or data row."""

    def __init__(self, message: str, field: str | None = None, detail: str | None = None) -> None:
        text = f"{field}: {message}" if field else message
        super().__init__(f"{text} ({detail})" if detail else text)
        self.reason = message
        self.field = field
        self.detail = detail    # the values involved; kept apart so equal reasons aggregate
