"""The browser client at ``GET /client/*.js`` and, with ``--dev``, the demo page at ``/demo``.

The files ship inside the package (``wsguard/browser``); each is read once, served with its
content type, an ``ETag`` and ``Cache-Control: no-cache``, so browsers keep a copy and
revalidate it with a 304 rather than download it again.

A browser fetches a module script in CORS mode, so a front end on another origin can
``import`` the client only if the answer allows that origin: the client files carry
``Access-Control-Allow-Origin: <origin>`` for the origins a WebSocket upgrade would accept
(``--allowed-origin``, the server's own, any with ``--dev``), never ``*`` and never credentials
(the files are the same for everyone), ``Vary: Origin`` on every answer so that a cache does not
hand one origin's answer to another, and an ``OPTIONS`` preflight is answered (204, or 403 for
an origin not allowed).
"""

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wsguard.server.cors import OriginAllowed, cors_headers, preflight
from wsguard.server.http_errors import refusal

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The demo page's policy: its own scripts and styles only, no inline code, no eval."""


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


def _load(folder: str, names: tuple[str, ...]) -> dict[str, _File]:
    root = resources.files("wsguard.browser")
    if folder:
        root = root / folder
    files = {}
    for name in names:
        body = (root / name).read_bytes()
        suffix = name[name.rfind(".") :]
        files[name] = _File(body, _TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return files


CLIENT_FILES = ("wsguard.js", "engine.js", "history.js", "policy.js", "tracker.js", "wsguard.d.ts")
DEMO_FILES = ("index.html", "demo.js", "demo.css")


def _serve(file: _File, request: Request, headers: dict[str, str] | None = None) -> Response:
    common = {"ETag": file.etag, "Cache-Control": "no-cache", **(headers or {})}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=common)
    return Response(file.body, media_type=file.media_type, headers=common)


def client_routes(allowed: OriginAllowed) -> list[BaseRoute]:
    """``GET /client/wsguard.js`` and the modules it imports, with CORS for the origins that
    ``allowed`` accepts (``WSGuard.origin_allowed``, embedded or standalone alike)."""
    files = _load("", CLIENT_FILES)

    async def client_file(request: Request) -> Response:
        cors = cors_headers(request, allowed)
        response: Response
        if request.method == "OPTIONS":
            response = preflight(cors, "GET, HEAD")
        elif (file := files.get(request.path_params["name"])) is None:
            response = refusal(404, "not found")
        else:
            response = _serve(file, request, cors)
        response.headers["Vary"] = "Origin"  # the answer depends on it: no cache may share it
        return response

    return [Route("/client/{name}", client_file, methods=["GET", "HEAD", "OPTIONS"])]


def demo_routes() -> list[BaseRoute]:
    """``GET /demo``: sign in as a user, start a run, watch it in several tabs (``--dev`` only)."""
    files = _load("demo", DEMO_FILES)
    security = {"Content-Security-Policy": DEMO_CSP, "X-Content-Type-Options": "nosniff"}

    async def page(request: Request) -> Response:
        return _serve(files["index.html"], request, security)

    async def asset(request: Request) -> Response:
        file = files.get(request.path_params["name"])
        if file is None or request.path_params["name"] == "index.html":
            return refusal(404, "not found")
        return _serve(file, request, security)

    return [
        Route("/demo", page, methods=["GET", "HEAD"]),
        Route("/demo/{name}", asset, methods=["GET", "HEAD"]),
    ]
