"""Domain errors: raised by decisions and use cases, mapped to problem+json in one place (api/problems.py)."""


class DomainError(Exception):
    """Base of every error a client caused and can read about."""

    title = "Bad request"

    def __init__(self, detail: str, **extra: object):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Invalid(DomainError):
    """Input that is well formed but not acceptable; `field` names the culprit."""

    title = "Invalid input"

    def __init__(self, field: str, detail: str, **extra: object):
        super().__init__(detail, field=field, **extra)
        self.field = field


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    title = "Conflict"


class Forbidden(DomainError):
    title = "Forbidden"


class Unauthorized(DomainError):
    title = "Unauthorized"


class PreconditionFailed(DomainError):
    title = "Precondition failed"
