"""``POST /admin/reload``: serve another run, or the same path read again, without dropping a
request (issue 25, item 4; ``served.py`` says how). Behind the API key like every other route but
the probes, and left out of the OpenAPI schema: it is for operators, not for the API's clients.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException

from hydrarec.serving.schemas import ReloadRequest, ReloadResponse
from hydrarec.serving.served import RunRefused, ServedRun

# a service of several worker processes (``hydrarec serve --workers N``): a request reaches one
NOT_HERE = (
    "this service runs several worker processes and a reload would reach only one of them: "
    "send SIGHUP to the main process instead (it restarts the workers one at a time)"
)


def admin_router(served: ServedRun, reloadable: bool = True) -> APIRouter:
    """``reloadable``: False in a worker of several, where each reload is answered 409."""
    router = APIRouter()

    @router.post("/admin/reload", response_model=ReloadResponse, include_in_schema=False)
    async def reload(body: ReloadRequest) -> ReloadResponse:
        """Load ``run`` beside the served run, check it, and serve it from the next request on:
        requests under way finish on the old run. 422 for a run that cannot be loaded, 409 for
        one that does not fit the service; the old run goes on serving either way."""
        if not reloadable:
            raise HTTPException(409, NOT_HERE)
        start = time.monotonic()
        try:
            now = await served.reload(body.run)
        except RunRefused as e:
            raise HTTPException(e.status, str(e)) from e
        return ReloadResponse(
            run=str(now.run),
            previous=str(now.replaced),
            reloads=served.reloads,
            seconds=round(time.monotonic() - start, 3),
        )

    return router
