"""HTTP plumbing of ``hbm serve``: HEAD, short 422s, offline docs, and a socket that names the port.

``harden`` adds to a FastAPI app: HEAD answered on every GET route (headers of the GET, no body);
validation errors that echo at most ``MAX_ECHO`` characters of the offending input; ``/docs``
served from assets on this machine (Swagger UI as shipped by the ``fastapi-offline`` package,
read-only from fixed routes), or, without that package, a plain HTML page of the routes; either
way the page names no other host. ``/redoc`` redirects to ``/docs``: ReDoc's bundle fetches its
logo from its vendor's CDN. ``bind`` opens the listening socket before uvicorn starts, so a port
in use is a ``PortInUseError`` (exit 5), not uvicorn's exit 3.
"""

from __future__ import annotations

import errno
import functools
import html
import importlib.util
import socket
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hbm.errors import PortInUseError

#: The most characters of a request's input that a 422 repeats (the longest valid user id).
MAX_ECHO = 128
ASSET_PREFIX = "/docs/assets"
#: Served name -> (file in fastapi_offline/static, media type).
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon.png": ("favicon.png", "image/png"),
}


def head_as_get(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: a HEAD request runs as GET and its response is sent without the body."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await app({**scope, "method": "GET"}, receive, send_headers_only)

    return middleware


def short_echo(value: Any) -> Any:
    """An input as a 422 repeats it: a string cut to ``MAX_ECHO`` characters with its length
    appended; any other value longer than that as text is replaced by a note of its length."""
    if isinstance(value, str):
        if len(value) <= MAX_ECHO:
            return value
        return f"{value[:MAX_ECHO]}... ({len(value)} characters)"
    text = str(value)
    return value if len(text) <= MAX_ECHO else f"(not repeated: {len(text)} characters)"


async def short_validation_errors(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body (``{"detail": [errors]}``) with each error's ``input`` shortened."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {**e, "input": short_echo(e["input"])} if "input" in e else dict(e) for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


def offline_assets() -> Path | None:
    """The folder of the Swagger UI files shipped by ``fastapi-offline``, or ``None``."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if all((folder / f).is_file() for f, _ in ASSETS.values()) else None


@functools.cache
def _asset(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


def routes_page(spec: dict[str, Any]) -> str:
    """A plain HTML page of an OpenAPI document's routes (no script, no stylesheet, no link out)."""
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(
                f"{p['name']} ({p['in']}{', required' if p.get('required') else ''})"
                for p in op.get("parameters", [])
            )
            cells = (method.upper(), path, op.get("summary", ""), params or "-")
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    info = spec.get("info", {})
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(info.get('title', ''))}</title></head><body>"
        f"<h1>{html.escape(info.get('title', ''))} {html.escape(info.get('version', ''))}</h1>"
        f"<p>{html.escape(info.get('description', ''))}</p>"
        "<p>The machine-readable schema: <a href='openapi.json'>openapi.json</a>.</p>"
        "<table border='1'><tr><th>method</th><th>path</th><th>summary</th>"
        f"<th>parameters</th></tr>{''.join(rows)}</table></body></html>"
    )


def add_docs(app: FastAPI, assets: Path | None) -> None:
    """``/docs``: Swagger UI from local ``assets``, the routes page without them; ``/redoc``
    redirects there."""

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        if assets is None:
            return HTMLResponse(routes_page(app.openapi()))
        base = root(request) + ASSET_PREFIX
        return get_swagger_ui_html(
            openapi_url=root(request) + str(app.openapi_url),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> RedirectResponse:
        return RedirectResponse(root(request) + "/docs")

    if assets is not None:
        for served, (file, media) in ASSETS.items():
            app.add_api_route(
                f"{ASSET_PREFIX}/{served}",
                _asset_route(assets, file, media),
                include_in_schema=False,
            )


def _asset_route(folder: Path, file: str, media: str) -> Any:
    def route() -> Response:
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(_asset(folder, file), media_type=media, headers=headers)

    return route


def harden(app: FastAPI) -> FastAPI:
    """Add HEAD, short validation errors and the offline docs to an app made with
    ``docs_url=None, redoc_url=None``."""
    app.add_middleware(head_as_get)
    app.add_exception_handler(RequestValidationError, short_validation_errors)
    add_docs(app, offline_assets())
    return app


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), for ``run_server``.

    Raises
    ------
    PortInUseError
        The port is in use, the host is not an address of this machine or the port is out of
        range: a one-line message naming the address.
    """
    where = f"{host}:{port}"
    if not 0 <= port <= 65535:  # getaddrinfo would wrap it (70000 -> 4464)
        raise PortInUseError(f"cannot listen on {where}: the port must be 0-65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise PortInUseError(f"cannot listen on {where}: {_reason(exc)}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"cannot listen on {where}: the port is in use (choose another with --port)"
            ) from None
        raise PortInUseError(f"cannot listen on {where}: {_reason(exc)}") from None
    return sock


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def run_server(app: FastAPI, sock: socket.socket, log_level: str) -> None:
    """Serve ``app`` with uvicorn on a socket from ``bind`` until interrupted."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])
