"""Alerts: one JSON POST to the configured webhook (`airflow.alert_webhook_url`), for a failed
Airflow task (platform.airflow_tasks) and for a monitoring threshold crossed (stages/monitor.py).

Standard library only: the DAG file imports this module, and it must stay cheap to parse.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prescore.config import AirflowSettings

log = logging.getLogger("prescore.alerts")


def post_alert(url: str, alert: Mapping[str, Any], timeout: float) -> int:
    """POST the alert as JSON; the HTTP status, or raises on a network or HTTP error."""
    request = urllib.request.Request(  # the URL comes from conf, checked to be http(s)
        url,
        data=json.dumps(alert, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "prescore-airflow"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def send(alert: Mapping[str, Any], settings: AirflowSettings) -> bool:
    """POST `alert` to the webhook if one is set; True if it was delivered. Never raises: an alert
    that cannot be sent is logged, and must not fail what raised it."""
    event = alert.get("event", "alert")
    try:
        if not settings.alert_webhook_url:
            return False
        status = post_alert(settings.alert_webhook_url, alert, settings.alert_timeout_seconds)
        log.info("prescore %s alert sent (HTTP %d)", event, status)
        return True
    except OSError as exc:  # unreachable, refused, timed out, or an HTTP error status
        log.warning("prescore %s alert could not be sent: %s", event, exc)
    except Exception:
        log.exception("prescore %s alert could not be sent", event)
    return False
