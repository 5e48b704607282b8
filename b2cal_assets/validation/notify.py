"""Notifications of the validation: failed checks and pending sign-offs, to the log and a webhook.

The webhook receives one JSON POST per sensor tick with something to say:
``{"source": "b2cal-validation", "notifications": [{"kind", "bucket", "calibration", "check", "text"}]}``
(a Mattermost/Slack-style ``"text"`` field with all lines is included, so chat webhooks show it).
Pure Python (urllib), no Dagster.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from b2cal_assets.validation.errors import ValidationDomainError

__all__ = ["KIND_FAILED_CHECK", "KIND_PENDING_SIGNOFF", "Notification", "NotificationDeliveryError", "post_webhook", "webhook_body"]

KIND_FAILED_CHECK = "failed_check"
KIND_PENDING_SIGNOFF = "pending_signoff"


class NotificationDeliveryError(ValidationDomainError, ConnectionError):
    """The webhook did not accept the notification (unreachable, timeout, non-2xx)."""


@dataclass(frozen=True)
class Notification:
    kind: str
    bucket: str
    text: str
    calibration: str = ""
    check: str = ""


def webhook_body(notifications: Sequence[Notification]) -> dict:
    return {
        "source": "b2cal-validation",
        "text": "\n".join(n.text for n in notifications),
        "notifications": [asdict(n) for n in notifications],
    }


def post_webhook(url: str, notifications: Sequence[Notification], *, timeout_s: float = 5.0) -> int:
    """POST the notifications as JSON; returns the HTTP status, NotificationDeliveryError otherwise."""
    if not url.startswith(("http://", "https://")):
        raise NotificationDeliveryError(f"webhook URL {url!r} is not http(s); fix the validation resource's webhook_url")
    request = urllib.request.Request(
        url,
        data=json.dumps(webhook_body(notifications)).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "b2cal-validation"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - scheme checked above
            return int(response.status)
    except urllib.error.HTTPError as error:
        raise NotificationDeliveryError(f"webhook {url} answered HTTP {error.code}; check the URL and the receiver's log") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise NotificationDeliveryError(f"webhook {url} unreachable ({error}); notifications stay in the sensor log") from error
