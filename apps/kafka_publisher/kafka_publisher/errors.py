"""The publisher's failures and their exit codes (docs/decisions.md, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_READY = 10
EXIT_CONFIG = 11
EXIT_DELIVERY = 12
EXIT_BAD_DATA = 13
EXIT_UNREADABLE_KEYS = 14
EXIT_CONCURRENT = 15


class PublisherError(Exception):
    """A failed run; `exit_code` is what the process exits with, `kind` names it in logs."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class NotReady(PublisherError):
    """No manifest for the run date: the Glue job has not finished (or failed)."""

    exit_code = EXIT_NOT_READY
    kind = "not_ready"


class ConfigError(PublisherError):
    """Missing or invalid configuration (environment, secret, Kafka properties, topic)."""

    exit_code = EXIT_CONFIG
    kind = "config_error"


class DeliveryError(PublisherError):
    """The broker did not acknowledge every message (or could not be reached)."""

    exit_code = EXIT_DELIVERY
    kind = "delivery_failed"


class BadData(PublisherError):
    """A data file does not match the manifest, or one of its lines is not a change event."""

    exit_code = EXIT_BAD_DATA
    kind = "bad_data"


class UnreadableKeys(PublisherError):
    """The run quarantined after-side records whose key could not be read (the manifest's
    `inputs.after.unreadable_keys`): such a record may exist with no event for it, so the
    day is refused unless ACCEPT_UNREADABLE_KEYS=true (contract §6)."""

    exit_code = EXIT_UNREADABLE_KEYS
    kind = "unreadable_keys"


class ConcurrentRun(PublisherError):
    """Another publisher holds the date (the 02:00 floor and the chained run, or a redelivered
    event, at once): this run publishes nothing, the other one publishes the day."""

    exit_code = EXIT_CONCURRENT
    kind = "concurrent_run"
