"""The exception for exports and runs that cannot work as asked."""


class ExportError(ValueError):
    """A request the export tools cannot fulfil; the message says what to change."""
