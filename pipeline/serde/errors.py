"""Serde errors: one type so the service loop can dead-letter any undecodable record with a clear reason."""


class SerdeError(ValueError):
    """A record could not be encoded or decoded. The message says why (bad header, unknown schema, bad body)."""
