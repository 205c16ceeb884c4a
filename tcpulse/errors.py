"""The exception tree of tcpulse.

Pure module: imports nothing outside the standard library.

    TaskclusterFailure                      base of every error tcpulse raises on purpose
    ├── TaskclusterRestFailure              an HTTP response with an error status (status_code, body)
    │   └── TaskclusterAuthFailure          401, or credentials that cannot be used at all
    ├── TaskclusterConnectionError          no HTTP response at all, after every retry
    ├── TaskclusterArtifactError            the artifact asked for is an 'error' artifact (reason)
    ├── ObjectHashVerificationError         downloaded bytes do not match the object's hashes
    ├── TaskclusterTopicExchangeFailure     bad routing-key input (also a ValueError)
    ├── InvalidReference                    a reference file that does not describe a service
    ├── ReferenceSetError                   a reference set that cannot be selected (unknown, too late)
    ├── BrokerFailure                       the AMQP broker refused or could not be reached
    └── ClientUsageError                    a REST method called with bad arguments (also a TypeError)

    PermanentFailure                        raised by a handler: dead-letter the message now,
                                            do not retry (not a TaskclusterFailure: it is a
                                            verdict about a message, not a tcpulse error)

The constructors take the official client's arguments, positionally or by keyword (`msg=`,
`superExc=`, `status_code=`, `body=`), and `str(error)` is the message given.

Example:
    >>> from tcpulse import TaskclusterFailure, TaskclusterTopicExchangeFailure
    >>> issubclass(TaskclusterTopicExchangeFailure, (TaskclusterFailure, ValueError))
    True
"""
from typing import Any, Optional


class TaskclusterFailure(Exception):
    """Base class of every error tcpulse raises."""


class TaskclusterRestFailure(TaskclusterFailure):
    """The service answered with an error status; `status_code` and `body` say what it said.

    Example:
        >>> error = TaskclusterRestFailure(msg="no such task", status_code=404)
        >>> str(error), error.status_code, error.body, error.superExc
        ('no such task', 404, {}, None)
    """

    def __init__(self, msg: str, superExc: Optional[BaseException] = None, status_code: Optional[int] = 500,
                 body: Any = None):
        super().__init__(msg)
        self.superExc = superExc
        self.status_code = status_code
        self.body = {} if body is None else body


class TaskclusterAuthFailure(TaskclusterRestFailure):
    """The service rejected the credentials (HTTP 401), or they cannot be used to sign at all."""


class TaskclusterConnectionError(TaskclusterFailure):
    """No response could be had from the service, even after retrying."""

    def __init__(self, msg: str, superExc: Optional[BaseException] = None):
        super().__init__(msg)
        self.superExc = superExc


class TaskclusterArtifactError(TaskclusterFailure):
    """The artifact is an 'error' artifact: the task recorded why it has no content.

    Example:
        >>> TaskclusterArtifactError("no such file", "file-missing-on-worker").reason
        'file-missing-on-worker'
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.reason))


class ObjectHashVerificationError(TaskclusterFailure):
    """The downloaded bytes do not match the hashes the object service recorded for them."""


class TaskclusterTopicExchangeFailure(TaskclusterFailure, ValueError):
    """A routing-key pattern or key could not be built or parsed from the given fields."""


class InvalidReference(TaskclusterFailure):
    """A reference file is not a valid API or exchange reference; the message lists every problem."""


class ReferenceSetError(TaskclusterFailure, ValueError):
    """The reference set asked for does not exist, or is asked for after classes were built from another."""


class BrokerFailure(TaskclusterFailure):
    """The AMQP broker could not be reached or refused an operation."""


class ClientUsageError(TaskclusterFailure, TypeError):
    """A generated REST method was called with arguments its reference does not allow."""


class PermanentFailure(Exception):
    """Raise from a handler to send the message to the dead-letter queue without retrying.

    Example:
        >>> def handler(event):
        ...     raise PermanentFailure("task definition is malformed")
    """
