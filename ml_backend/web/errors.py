"""Errors the HTTP layer turns into 4xx answers with a message."""


class BadRequest(ValueError):
    """The request is malformed or asks for something unsupported (HTTP 400)."""

    status = 400
