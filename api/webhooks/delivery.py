"""One attempt at sending a delivery over HTTP: check the target, sign, POST, judge.

Only a 2xx answer is a success. Redirects are not followed (a 3xx is a failure: the
receiver should register the final URL). The body of the answer is never read.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import httpx

from api.db import utcnow
from api.webhooks.service import AttemptOutcome, DeliveryPlan
from api.webhooks.signing import webhook_headers
from api.webhooks.ssrf import IPAddress, Target, UnsafeTarget, check_target_async

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A receiver that trickles its answer byte by byte is cut off after this long in all.
DEADLINE = 15.0
USER_AGENT = "Rebound-Webhooks/1.0"
# A name with many addresses is tried at a few of them at most (all of them checked).
MAX_ADDRESSES_TRIED = 3
# The certificate authorities receivers are checked against (tests add their own).
TLS_VERIFY: ssl.SSLContext | bool = True


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the receiver"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _post(
    client: httpx.AsyncClient,
    target: Target,
    address: IPAddress,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST to one checked address, speaking to it as the URL's host (Host and TLS SNI)."""
    extensions = {"sni_hostname": target.hostname} if target.url.scheme == "https" else {}
    request = client.build_request(
        "POST",
        target.url_for(address),
        content=body,
        headers={**headers, "Host": target.host_header},
        extensions=extensions,
    )
    response = await client.send(request, stream=True)
    await response.aclose()  # the status line and headers are all we need
    return response


async def send_delivery(plan: DeliveryPlan, *, allow_private: bool) -> AttemptOutcome:
    """Try the delivery once; never raises for anything the receiver or network does."""
    at = utcnow()
    started = time.monotonic()

    def outcome(status: int | None, error: str | None) -> AttemptOutcome:
        return AttemptOutcome(
            at=at,
            response_status=status,
            error=error,
            duration_ms=round((time.monotonic() - started) * 1000),
        )

    try:
        target = await check_target_async(plan.url, allow_private=allow_private)
    except UnsafeTarget as exc:
        return outcome(None, f"refused to send: {exc}")

    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **webhook_headers(plan.secrets, msg_id=plan.delivery_id, timestamp=at, body=plan.body),
    }
    body = plan.body.encode()
    error = "could not connect"
    # A client per attempt: connections are never pooled across hosts that share an
    # address, and proxies from the environment are ignored (they would bypass the guard).
    async with httpx.AsyncClient(
        timeout=TIMEOUT, follow_redirects=False, trust_env=False, verify=TLS_VERIFY
    ) as client:
        for address in target.addresses[:MAX_ADDRESSES_TRIED]:
            try:
                response = await asyncio.wait_for(
                    _post(client, target, address, body, headers), DEADLINE
                )
            except TimeoutError:
                return outcome(None, "timed out waiting for the receiver")
            except httpx.ConnectError as exc:
                error = _describe(exc)
                continue  # the next address may answer
            except httpx.HTTPError as exc:
                return outcome(None, _describe(exc))
            status = response.status_code
            if 200 <= status < 300:
                return outcome(status, None)
            if 300 <= status < 400:
                location = response.headers.get("location", "")[:200]
                return outcome(status, f"redirect to {location or '?'} not followed")
            return outcome(status, f"the receiver answered {status}")
    return outcome(None, error)
