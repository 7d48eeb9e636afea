"""The annotation web server: the standard library's ThreadingHTTPServer in front of `db.Store`.

Routes (docs/annotate.md, "HTTP API"); every /api route needs `Authorization: Bearer <token>`:
  GET  /, /app.js, /app.css   the page (files of this package: no CDN, works offline)
  GET  /api/task              the annotator's open task, or a new one ({"done": true} when none)
  GET  /api/image?assignment=A&pos=P   image P of the annotator's open assignment A
  GET  /api/me                the annotator's name and task counts
  POST /api/answer            one image's answer (idempotent by "key")
  POST /api/finish            run the gold check of a fully answered assignment

Security model (docs/annotate.md, "Security"): images are addressed by (assignment, position),
never by a name from the request, so there is no path to traverse; an annotator sees and writes
only its own assignments (another's looks like a missing one); tokens are stored as SHA-256;
bodies are JSON of at most MAX_BODY bytes with exactly the known fields; static files are a fixed
table; responses forbid framing, sniffing and any script not served from here.
"""
from __future__ import annotations

import http.server
import importlib.resources
import json
import socket
import sqlite3
import urllib.parse

from absl import logging

from pointseg_jax.annotate import db


MAX_BODY = 64 * 1024          # bytes of one request body (an answer with 100 clicks is ~5 KB)
MAX_TOKEN = 128
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def static_files() -> dict[str, tuple[bytes, str]]:
  """The page's files, read once from the package (package data, see setup.cfg)."""
  root = importlib.resources.files("pointseg_jax.annotate") / "static"
  return {route: ((root / name).read_bytes(), ctype) for route, (name, ctype) in STATIC.items()}


class Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"     # keep-alive; every response sets Content-Length
  server_version = "pointseg-annotate"
  timeout = 30                      # seconds a connection may idle mid-request (slow clients)
  server: "AnnotationServer"

  # -- plumbing ---------------------------------------------------------------------------------

  def version_string(self) -> str:   # no Python version in the Server header
    return self.server_version

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.debug("%s %s", self.address_string(), format % args)

  def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
    if self.command == "POST" and not self._consumed:
      self.close_connection = True   # an unread body would be taken for the next request
    self.send_response(status)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
      self.send_header(k, v)
    if self.close_connection:
      self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(body)

  def _json(self, status: int, obj, extra: dict | None = None) -> None:
    self._send(status, json.dumps(obj).encode(), "application/json", extra)

  def _error(self, status: int, message: str, extra: dict | None = None) -> None:
    if status >= 500:
      logging.error("%s %s -> %d %s", self.command, self.path.split("?")[0], status, message)
    else:
      logging.info("%s %s -> %d %s", self.command, self.path.split("?")[0], status, message)
    self._json(status, {"error": message}, extra)

  def _annotator(self) -> int | None:
    auth = self.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme != "Bearer" or not 0 < len(token) <= MAX_TOKEN:
      return None
    return self.server.store.annotator(token)

  def _body(self):
    if self.headers.get("Transfer-Encoding"):
      self.close_connection = True
      raise _HttpError(411, "send a Content-Length, not a chunked body")
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      self.close_connection = True
      raise _HttpError(411, "Content-Length required")
    if int(length) > MAX_BODY:
      if int(length) <= 16 * MAX_BODY:   # read it away so the client sees the answer, not a reset
        self.rfile.read(int(length))
      self.close_connection = True
      raise _HttpError(413, f"request body over {MAX_BODY} bytes")
    data = self.rfile.read(int(length))
    self._consumed = True
    if self.headers.get_content_type() != "application/json":
      raise _HttpError(415, "Content-Type must be application/json")
    try:
      return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise _HttpError(400, f"malformed JSON ({e.__class__.__name__})") from e

  def _dispatch(self, fn) -> None:
    try:
      fn()
    except _HttpError as e:
      self._error(e.status, str(e), e.headers)
    except db.RequestError as e:
      self._error(e.status, str(e))
    except sqlite3.OperationalError as e:   # e.g. the database stayed locked past the timeout
      self._error(503, f"database busy ({e}); retry", {"Retry-After": "1"})
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
      self.close_connection = True
    except Exception:  # pylint: disable=broad-except
      logging.exception("internal error on %s %s", self.command, self.path.split("?")[0])
      self._error(500, "internal error (logged on the server)")

  # -- routes -----------------------------------------------------------------------------------

  def do_GET(self):  # pylint: disable=invalid-name
    self._dispatch(self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._consumed = False
    self._dispatch(self._post)

  def _get(self) -> None:
    path, _, query = self.path.partition("?")
    if path in self.server.static:
      body, ctype = self.server.static[path]
      return self._send(200, body, ctype)
    if not path.startswith("/api/"):
      raise _HttpError(404, "not found")
    annotator = self._require_annotator()
    store = self.server.store
    if path == "/api/task":
      view = store.current_assignment(annotator)
      return self._json(200, view if view is not None else {"done": True})
    if path == "/api/me":
      return self._json(200, store.progress(annotator))
    if path == "/api/image":
      params = _query_ints(query, ("assignment", "pos"))
      body, ctype = store.image_bytes(annotator, params["assignment"], params["pos"])
      return self._send(200, body, ctype)
    raise _HttpError(404, "not found")

  def _post(self) -> None:
    path = self.path.partition("?")[0]
    routes = {"/api/answer": self.server.store.save_answer, "/api/finish": self.server.store.finish}
    if path not in routes:
      raise _HttpError(404, "not found")
    annotator = self._require_annotator()
    self._json(200, routes[path](annotator, self._body()))

  def _require_annotator(self) -> int:
    annotator = self._annotator()
    if annotator is None:
      raise _HttpError(401, "missing or unknown token (open the link you were given)",
                       {"WWW-Authenticate": "Bearer"})
    return annotator


class _HttpError(Exception):
  def __init__(self, status: int, message: str, headers: dict | None = None):
    super().__init__(message)
    self.status, self.headers = status, headers


def _query_ints(query: str, names: tuple[str, ...]) -> dict[str, int]:
  try:
    params = urllib.parse.parse_qs(query, max_num_fields=len(names) + 2)
  except ValueError as e:
    raise _HttpError(400, f"bad query string ({e})") from e
  out = {}
  for name in names:
    values = params.get(name, [])
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()) or len(values[0]) > 12:
      raise _HttpError(400, f"query parameter {name} must be one non-negative integer")
    out[name] = int(values[0])
  return out


class AnnotationServer(http.server.ThreadingHTTPServer):
  """One thread per connection (daemon threads), a deep listen backlog for bursts of annotators."""
  daemon_threads = True
  request_queue_size = 256

  def __init__(self, store: db.Store, address: tuple[str, int]):
    self.store = store
    self.static = static_files()
    super().__init__(address, Handler)

  def handle_error(self, request, client_address):
    logging.debug("connection error from %s", client_address, exc_info=True)


def make_server(store: db.Store, host: str = "127.0.0.1", port: int = 8000) -> AnnotationServer:
  return AnnotationServer(store, (host, port))
