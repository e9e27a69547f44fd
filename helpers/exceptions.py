"""The exceptions sharelab raises. Every message says what was wrong and what to do about it."""

from __future__ import annotations


class SharelabError(Exception):
    """Base class of every error sharelab reports to a user."""


class SqlParseError(SharelabError):
    """A statement that does not parse; carries the position and what was expected."""

    def __init__(
        self, message: str, *, position: int = 0, line: int = 1, column: int = 1, expected: str = ""
    ) -> None:
        super().__init__(message)
        self.position = position
        self.line = line
        self.column = column
        self.expected = expected


class NotFoundError(SharelabError):
    """An unknown share, recipient, table, schema, dataset or file."""


class AlreadyExistsError(SharelabError):
    """An object that exists already (use IF NOT EXISTS to make the statement idempotent)."""


class InvalidNameError(SharelabError):
    """A name that breaks the Delta Sharing naming rules."""


class InvalidArgumentError(SharelabError):
    """A value that is out of range or malformed."""


class NotADeltaTableError(InvalidArgumentError):
    """A path that holds no Delta table (no ``_delta_log``)."""


class TokenError(SharelabError):
    """A token or activation code that is unknown, expired, revoked or already used."""


class ServerError(SharelabError):
    """The sharing server could not be started, stopped or reached."""


class DatasetError(SharelabError):
    """A dataset could not be generated or exported."""


class PolicyViolationError(SharelabError):
    """A data-mesh policy refused an action: a mandatory governance policy failed (publishing), or a
    product's access policy does not allow a consumer (subscribing). Carries the evidence."""

    def __init__(self, message: str, *, policy: str = "", evidence: str = "") -> None:
        super().__init__(message)
        self.policy = policy
        self.evidence = evidence


class SchemaCompatibilityError(PolicyViolationError):
    """A table's current schema breaks the product's published schema contract without a new major
    version."""


class GrantRefusedError(PolicyViolationError):
    """A ``GRANT`` (SQL, Python API, CLI or mesh) that a grant condition of the share refuses, e.g. the
    access policy of the data product the share backs; ``.policy`` names it."""


class ReadOnlyShareError(InvalidArgumentError):
    """A write (INSERT, UPDATE, DELETE, DROP, ALTER...) aimed at a table of a shared catalog: shared data is
    the provider's, read-only for the recipient."""


class ShareAccessError(SharelabError):
    """The provider's server refused a recipient's request: the token (401), the address or a signed URL
    (403), or a share no longer granted (404). ``.status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
