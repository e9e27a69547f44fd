"""Opt-in progress reports from an attendee's lab checks to the instructor's board.

A sharelab extension outside the Delta Sharing protocol: ``POST {server}/workshop/progress`` with the
attendee's own bearer token (the one in their profile), so the instructor sees who passed which task
without collecting notebooks. Nothing is sent unless the attendee calls :func:`report_progress` or sets
``SHARELAB_REPORT_PROGRESS=<profile path>`` (then every lab check reports its result). A server that is not
a sharelab server answers 404 and the report is dropped with a warning.
"""

from __future__ import annotations

import os
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import requests

from helpers.recipient.profile_files import as_profile

if TYPE_CHECKING:
    from helpers.recipient.profile_files import ProfileLike

__all__ = ["PROGRESS_PATH", "REPORT_ENV", "progress_url", "report_from_env", "report_progress"]

PROGRESS_PATH = "/workshop/progress"
#: Set to a profile path to report every lab check automatically (opt-in).
REPORT_ENV = "SHARELAB_REPORT_PROGRESS"


def progress_url(endpoint: str) -> str:
    """The progress route of the server behind a profile's ``endpoint``."""
    u = urllib.parse.urlsplit(endpoint)
    return f"{u.scheme}://{u.netloc}{PROGRESS_PATH}"


def _item(result: Any) -> dict[str, str]:
    data = result.to_json() if hasattr(result, "to_json") else dict(result)
    item = {"task": str(data["task"]), "status": str(data["status"])}
    if data.get("message"):
        item["message"] = str(data["message"])[:500]
    return item


def report_progress(
    profile: ProfileLike,
    lab: str,
    results: Iterable[Mapping[str, Any] | Any],
    *,
    timeout: float = 5.0,
) -> int:
    """Send lab check results to the instructor's board; returns how many the server stored.

    :param lab: the lab's name (``lab2_recipient``).
    :param results: :class:`helpers.labs.core.CheckResult` objects or dicts with ``task`` and ``status``.
    :raises requests.HTTPError: the server refused the report (401: the profile's token is not valid).
    """
    p = as_profile(profile)
    resp = requests.post(
        progress_url(p.endpoint),
        json={"lab": lab, "results": [_item(r) for r in results]},
        headers={"Authorization": f"Bearer {p.bearer_token}"},
        timeout=timeout,
    )
    resp.raise_for_status()
    return int(resp.json().get("stored", 0))


def report_from_env(lab: str, results: Iterable[Any]) -> int | None:
    """Report ``results`` when ``$SHARELAB_REPORT_PROGRESS`` names a profile; never raises."""
    path = os.environ.get(REPORT_ENV, "").strip()
    if not path:
        return None
    try:
        return report_progress(path, lab, results)
    except Exception as exc:  # noqa: BLE001 - a report must never break a lab check
        warnings.warn(f"progress report not sent ({exc})", stacklevel=2)
        return None
