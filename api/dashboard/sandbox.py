"""`/dashboard/sandbox`: simulate a text or image generation request for a user, post it as a
real usage event, and stream its journey (api/dashboard/journey.py) as server-sent events."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api.dashboard import internal, journey
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import render
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("/sandbox")
async def sandbox(request: Request, s: Session = Depends(session)):
    settings = request.app.state.settings
    return render(request, "sandbox.html", s, api_url=str(request.base_url).rstrip("/"),
                  proxy_url=f"http://{request.url.hostname}:{settings.proxy_port}")


def event_from(form, now: datetime) -> dict:
    """The usage event a sandbox form describes (the API validates it; errors name the field)."""
    kind = form.get("kind") or "text"
    event = {
        "event_id": f"evt_sandbox_{uuid.uuid4().hex}",
        "user_id": str(form.get("user_id") or "").strip(),
        "feature_id": str(form.get("feature_id") or "sandbox").strip(),
        "provider": str(form.get("provider") or "").strip(),
        "model": str(form.get("model") or "").strip(),
        "timestamp": now.isoformat(),
        "metadata": {"source": "dashboard-sandbox"},
    }
    if (team := str(form.get("team_id") or "").strip()):
        event["team_id"] = team
    if kind == "image":
        event.update(event_type="IMAGE_GENERATION", image_count=_int(form.get("image_count"), 1),
                     image_size=str(form.get("image_size") or "1024x1024"))
        if (quality := str(form.get("quality") or "").strip()):
            event["quality"] = quality
    else:
        event.update(event_type="TOKEN_USAGE", input_tokens=_int(form.get("input_tokens"), 0),
                     output_tokens=_int(form.get("output_tokens"), 0))
    return event


def _int(value, default: int):
    text = str(value or "").strip()
    if not text:
        return default
    return internal.json_int(text)


@router.post("/sandbox/events")
async def post_event(request: Request, s: Session = Depends(form_session)):
    event = event_from(await request.form(), datetime.now(timezone.utc))

    async def stream():
        yield _sse("event", event)
        async for stage in journey.travel(request, s, event):
            yield _sse("stage", {"stage": stage.stage, "ok": stage.ok, "ms": stage.ms, "detail": stage.detail})
        yield _sse("done", {"event_id": event["event_id"]})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"
