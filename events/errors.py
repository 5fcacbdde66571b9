"""Domain errors: raised by decisions and use cases, mapped to problem+json in one place (api/problems.py)."""


class DomainError(Exception):
    """Base of every error a client caused and can read about; api/problems.py gives each status
    its one title."""

    def __init__(self, detail: str, **extra: object):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Invalid(DomainError):
    """Input that is well formed but not acceptable; `field` names the culprit."""

    def __init__(self, field: str, detail: str, **extra: object):
        super().__init__(detail, field=field, **extra)
        self.field = field


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Unauthorized(DomainError):
    pass


class PreconditionFailed(DomainError):
    pass
