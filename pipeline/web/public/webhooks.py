"""POST /webhooks/{provider}: bounces and complaints, verified by the provider's verifier
(looked up by name in the ``brief.webhooks`` registry) and applied to the store."""

from __future__ import annotations

import logging
from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.web.public.context import state_of
from pipeline.webhooks.apply import apply_events, remember_token
from pipeline.webhooks.common import BadPayload, Unverified
from pipeline.webhooks.registry import WebhookCall

log = logging.getLogger("brief.web")


async def webhook(request: Request) -> Response:
    """Verify, then apply; JSON answers (the caller is a provider, not a person)."""
    s = state_of(request)
    provider = request.path_params["provider"]
    verifier = await run_in_threadpool(s.verifiers.get, provider)
    if verifier is None:
        return JSONResponse({"error": "unknown provider"}, status_code=404)
    call = WebhookCall(
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
        now=s.now(),
        remember=partial(remember_token, s.engine, provider),
    )
    try:
        events = await run_in_threadpool(verifier.verify, call)
    except Unverified as exc:
        # One line, for the operator setting a webhook up; never the body.
        log.warning("%s webhook unverified: %s", provider, exc)
        return JSONResponse({"error": "unverified"}, status_code=401)
    except BadPayload as exc:
        log.warning("%s webhook refused: %s", provider, exc)
        return JSONResponse({"error": str(exc)}, status_code=400)
    tally = await run_in_threadpool(apply_events, s.engine, events)
    return JSONResponse(
        {"applied": tally.applied, "duplicates": tally.duplicates, "skipped": tally.skipped}
    )
