"""The annotation web app: a Starlette (ASGI) app in front of `db.Store`; `runner.py` serves it.

Routes (docs/annotate.md, "HTTP API"); /api routes need `Authorization: Bearer <token>` (an
annotator's), /api/admin routes the project's admin token (the organiser's dashboard):
  GET  /, /app.js, /app.css   the annotation page (files of this package: no CDN, works offline)
  GET  /api/task              the annotator's open task, or a new one ({"done": true} when none)
  GET  /api/image?assignment=A&pos=P   image P of the annotator's open assignment A
  GET  /api/me                the annotator's name and task counts
  POST /api/answer            one image's answer (idempotent by "key")
  POST /api/finish            run the gold check of a fully answered assignment
  GET  /admin, /admin.js, /admin.css   the campaign dashboard
  GET  /api/admin/campaign    progress, per-annotator accuracy and time, flags (dashboard.py)
  POST /api/admin/add | revoke | rotate  {"name"}   annotators and their tokens
  GET  /api/admin/export      the accepted clicks as click JSON (a download)

Security model (docs/annotate.md, "Security"): images are addressed by (assignment, position),
never by a name from the request, so there is no path to traverse; an annotator sees and writes
only its own assignments (another's looks like a missing one); tokens are stored as SHA-256 and
looked up on every request (a revoked one fails at once, in every worker); a body is read within
BODY_TIMEOUT_S, at most MAX_BODY bytes, and typed by `schemas` before the database sees it; static
files are a fixed table; responses forbid framing, sniffing and any script not served from here.
"""
from __future__ import annotations

import importlib.resources
import os
import sqlite3
import tempfile
import urllib.parse

from absl import logging
import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from pointseg_jax import errors
from pointseg_jax.annotate import dashboard
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export as export_lib
from pointseg_jax.annotate import schemas


MAX_BODY = 64 * 1024          # bytes of one request body (an answer with 100 clicks is ~5 KB)
MAX_TOKEN = 128
BODY_TIMEOUT_S = 10.0         # a body must arrive within this (a slow client cannot hold a worker)
SERVER_NAME = "pointseg-annotate"
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8"),
          "/admin": ("admin.html", "text/html; charset=utf-8"),
          "/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
          "/admin.css": ("admin.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Server": SERVER_NAME,
}
_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class HttpError(Exception):
  def __init__(self, status: int, message: str, headers: dict | None = None):
    super().__init__(message)
    self.status, self.headers = status, headers or {}


def static_files() -> dict[str, tuple[bytes, str]]:
  """The pages' files, read once from the package (package data, see setup.cfg)."""
  root = importlib.resources.files("pointseg_jax.annotate") / "static"
  return {route: ((root / name).read_bytes(), ctype) for route, (name, ctype) in STATIC.items()}


# -- request plumbing ------------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
  scheme, _, token = request.headers.get("authorization", "").partition(" ")
  return token if scheme == "Bearer" and 0 < len(token) <= MAX_TOKEN else None


async def _body(request: Request, model) -> dict:
  """The JSON body, bounded in size and time, typed by `model` (schemas)."""
  if "transfer-encoding" in request.headers or "content-length" not in request.headers:
    raise HttpError(411, "Content-Length required (no chunked bodies)", {"Connection": "close"})
  if int(request.headers["content-length"]) > MAX_BODY:   # h11 has checked it is all digits
    raise HttpError(413, f"request body over {MAX_BODY} bytes", {"Connection": "close"})
  data = bytearray()
  try:
    with anyio.fail_after(BODY_TIMEOUT_S):
      async for chunk in request.stream():
        data += chunk
  except TimeoutError as e:
    raise HttpError(408, f"request body not received within {BODY_TIMEOUT_S:.0f} s",
                    {"Connection": "close"}) from e
  media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
  if media != "application/json":
    raise HttpError(415, "Content-Type must be application/json")
  return schemas.parse(model, bytes(data))


def _query_ints(request: Request, names: tuple[str, ...]) -> dict[str, int]:
  query = request.scope["query_string"].decode("latin-1")
  try:
    params = urllib.parse.parse_qs(query, max_num_fields=len(names) + 2)
  except ValueError as e:
    raise HttpError(400, f"bad query string ({e})") from e
  out = {}
  for name in names:
    values = params.get(name, [])
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()) or len(values[0]) > 12:
      raise HttpError(400, f"query parameter {name} must be one non-negative integer")
    out[name] = int(values[0])
  return out


def _json(obj, status: int = 200, headers: dict | None = None) -> JSONResponse:
  return JSONResponse(obj, status_code=status, headers=headers)


# -- the app ---------------------------------------------------------------------------------------


def make_app(store: db.Store) -> Starlette:
  """The ASGI app serving `store` (every worker process makes its own, see runner.py)."""
  static = static_files()

  async def annotator(request: Request) -> int:
    token = _bearer(request)
    annotator_id = None if token is None else await run_in_threadpool(store.annotator, token)
    if annotator_id is None:
      raise HttpError(401, "missing or unknown token (open the link you were given)",
                      {"WWW-Authenticate": "Bearer"})
    return annotator_id

  async def admin(request: Request) -> None:
    token = _bearer(request)
    if token is None or not await run_in_threadpool(store.is_admin, token):
      raise HttpError(401, "missing or wrong admin token (the dashboard link serve printed)",
                      {"WWW-Authenticate": "Bearer"})

  async def page(request: Request) -> Response:
    body, ctype = static[request.url.path]
    return Response(body, media_type=ctype)

  async def task(request: Request) -> Response:
    view = await run_in_threadpool(store.current_assignment, await annotator(request))
    return _json(view if view is not None else {"done": True})

  async def me(request: Request) -> Response:
    return _json(await run_in_threadpool(store.progress, await annotator(request)))

  async def image(request: Request) -> Response:
    who = await annotator(request)
    q = _query_ints(request, ("assignment", "pos"))
    # Re-encoded with fresh noise on every serve (blind.py): gold images are not known by bytes.
    body, ctype = await run_in_threadpool(store.image_bytes, who, q["assignment"], q["pos"])
    return Response(body, media_type=ctype)

  async def answer(request: Request) -> Response:
    who = await annotator(request)
    return _json(await run_in_threadpool(store.save_answer, who,
                                         await _body(request, schemas.Answer)))

  async def finish(request: Request) -> Response:
    who = await annotator(request)
    return _json(await run_in_threadpool(store.finish, who, await _body(request, schemas.Finish)))

  async def campaign(request: Request) -> Response:
    await admin(request)
    return _json(await run_in_threadpool(dashboard.campaign, store))

  async def add(request: Request) -> Response:
    await admin(request)
    name = (await _body(request, schemas.AnnotatorName))["name"]
    try:
      token = await run_in_threadpool(store.add_annotator, name)
    except errors.ConfigError as e:   # a bad or taken name
      raise HttpError(409, str(e)) from e
    return _json({"name": name, "token": token})

  async def revoke(request: Request) -> Response:
    await admin(request)
    name = (await _body(request, schemas.AnnotatorName))["name"]
    await run_in_threadpool(store.revoke_token, name)
    return _json({"name": name, "revoked": True})

  async def rotate(request: Request) -> Response:
    await admin(request)
    name = (await _body(request, schemas.AnnotatorName))["name"]
    return _json({"name": name, "token": await run_in_threadpool(store.rotate_token, name)})

  async def export(request: Request) -> Response:
    await admin(request)
    body, counts = await run_in_threadpool(_export_bytes, store)
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="clicks.json"',
        "X-Export-Counts": f"{counts['clicks']} clicks on {counts['images']} images"})

  routes = [Route(path, page) for path in static]
  routes += [Route("/api/task", task), Route("/api/me", me), Route("/api/image", image),
             Route("/api/answer", answer, methods=["POST"]),
             Route("/api/finish", finish, methods=["POST"]),
             Route("/api/admin/campaign", campaign), Route("/api/admin/export", export),
             Route("/api/admin/add", add, methods=["POST"]),
             Route("/api/admin/revoke", revoke, methods=["POST"]),
             Route("/api/admin/rotate", rotate, methods=["POST"])]
  handlers = {HttpError: _http_error, HTTPException: _starlette_error,
              db.RequestError: _request_error, sqlite3.OperationalError: _db_busy,
              Exception: _internal_error}
  return SecureHeaders(Starlette(routes=routes, exception_handlers=handlers))


def _export_bytes(store: db.Store) -> tuple[bytes, dict]:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "clicks.json")
    counts = export_lib.export(store, path)
    with open(path, "rb") as f:
      return f.read(), counts


# -- errors: always {"error": message}, never a traceback to the client ---------------------------


def _log(request: Request, status: int, message: str) -> None:
  (logging.error if status >= 500 else logging.info)(
      "%s %s -> %d %s", request.method, request.url.path, status, message)


async def _http_error(request: Request, e: HttpError) -> Response:
  _log(request, e.status, str(e))
  return _json({"error": str(e)}, e.status, e.headers)


async def _starlette_error(request: Request, e: HTTPException) -> Response:
  message = {404: "not found", 405: "method not allowed"}.get(e.status_code, str(e.detail))
  return _json({"error": message}, e.status_code, e.headers)


async def _request_error(request: Request, e: db.RequestError) -> Response:
  _log(request, e.status, str(e))
  return _json({"error": str(e)}, e.status)


async def _db_busy(request: Request, e: sqlite3.OperationalError) -> Response:
  _log(request, 503, str(e))   # e.g. the database stayed locked past the busy timeout
  return _json({"error": f"database busy ({e}); retry"}, 503, {"Retry-After": "1"})


async def _internal_error(request: Request, e: Exception) -> Response:
  logging.error("internal error on %s %s", request.method, request.url.path, exc_info=e)
  return _json({"error": "internal error (logged on the server)"}, 500)


class SecureHeaders:
  """ASGI middleware: the security headers on every response, errors from the router included."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)

    async def send_with_headers(message):
      if message["type"] == "http.response.start":
        names = {k for k, _ in message.get("headers", [])}
        message = {**message, "headers": [*message.get("headers", []),
                                          *[(k, v) for k, v in _HEADERS if k not in names]]}
      await send(message)

    return await self.app(scope, receive, send_with_headers)


def app_from_env():
  """The app of a worker process (runner.py starts workers with DB_ENV set to the database)."""
  from pointseg_jax.annotate import runner   # pylint: disable=import-outside-toplevel
  return make_app(db.Store(os.environ[runner.DB_ENV]))
