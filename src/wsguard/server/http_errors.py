"""Plain HTTP refusals, answered before the upgrade (docs/protocol.md section 2)."""

import math

from starlette.responses import JSONResponse


def refusal(status: int, message: str, retry_after: float | None = None) -> JSONResponse:
    """A JSON ``{"error": message}`` response; 429 and 503 carry ``Retry-After`` in whole seconds."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"error": message}, status_code=status, headers=headers)
