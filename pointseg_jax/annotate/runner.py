"""Serving the app: uvicorn (h11) with the limits a public server needs, one or several workers.

Why uvicorn + Starlette (docs/annotate.md, "Deploy"): asyncio holds a waiting connection for a few
KB instead of a thread, so slow clients cannot exhaust workers; h11 is a strict HTTP/1.1 parser
(a `Content-Length: ²` or a malformed header is its 400, a body is always read as a body, never as
the next request); uvicorn has the idle (keep-alive) timeout, a connection limit, a header-size
limit and a multi-process supervisor. It lacks one thing: a deadline for the request line and
headers, so a client trickling a header byte by byte would hold its connection for ever. `_Protocol`
adds that deadline (HEADER_TIMEOUT_S from the connection or the previous response; it also cuts a
body that no route reads, e.g. a GET's, still trickling in after the answer); the app bounds the
bodies it reads (server.BODY_TIMEOUT_S).

Workers are processes sharing one listening socket, each with its own connections to the SQLite
database; WAL lets readers run beside the one writer, and every write is one BEGIN IMMEDIATE
transaction with a busy timeout (db.py), so workers never interleave a request's writes.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from typing import Iterator

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from pointseg_jax import errors
from pointseg_jax.annotate import db
from pointseg_jax.annotate import server

HEADER_TIMEOUT_S = 10.0        # request line + headers must arrive within this
KEEP_ALIVE_S = 5               # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 800          # per worker; beyond it requests get 503 (the fd limit is 1024)
MAX_HEADER_BYTES = 16 * 1024   # request line + headers
BACKLOG = 512
DB_ENV = "POINTSEG_ANNOTATE_DB"   # how worker processes learn the database


class _Protocol(H11Protocol):
  """uvicorn's h11 protocol plus a deadline for each request's line and headers (slow loris)."""

  _header_timer = None

  def connection_made(self, transport) -> None:
    super().connection_made(transport)
    self._arm_header_deadline()

  def on_response_complete(self) -> None:
    super().on_response_complete()
    self._arm_header_deadline()   # the next request on this keep-alive connection

  def connection_lost(self, exc) -> None:
    if self._header_timer is not None:
      self._header_timer.cancel()
    super().connection_lost(exc)

  def _arm_header_deadline(self) -> None:
    if self._header_timer is not None:
      self._header_timer.cancel()
    self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._header_deadline)

  def _header_deadline(self) -> None:
    state = self.conn.their_state
    # IDLE: the request's headers are not complete (a request being answered is not IDLE).
    # SEND_BODY after our answer: a body nobody reads (a GET's) still trickling in.
    unread = (self.cycle is not None and self.cycle.response_complete and
              state is h11.SEND_BODY)
    if (state is h11.IDLE or unread) and not self.transport.is_closing():
      self.transport.close()


def bind(host: str, port: int) -> socket.socket:
  """The listening socket, or one line naming the flag when the address cannot be had."""
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # not a busy port: TIME_WAIT only
  try:
    sock.bind((host, port))
  except OSError as e:
    sock.close()
    if e.errno == errno.EADDRINUSE:
      raise errors.ConfigError(f"--port {port}: address {host}:{port} is already in use (another "
                               "server, perhaps another `annotate serve`?); stop it or choose "
                               "another --port (0 picks a free one)") from None
    raise errors.ConfigError(f"--host {host} --port {port}: cannot listen there "
                             f"({e.strerror})") from None
  sock.listen(BACKLOG)
  sock.set_inheritable(True)
  return sock


def _config(app, workers: int = 1) -> uvicorn.Config:
  return uvicorn.Config(
      app, http=_Protocol, workers=workers, factory=isinstance(app, str), lifespan="off",
      timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONNECTIONS, backlog=BACKLOG,
      h11_max_incomplete_event_size=MAX_HEADER_BYTES, server_header=False, access_log=False,
      log_config=None, timeout_graceful_shutdown=5)


def run(store: db.Store, sock: socket.socket, workers: int = 1) -> None:
  """Serve until SIGINT/SIGTERM: in this process, or in `workers` processes on the same socket."""
  if workers <= 1:
    uvicorn.Server(_config(server.make_app(store))).run(sockets=[sock])
    return
  os.environ[DB_ENV] = os.path.abspath(store.path)
  config = _config(f"{server.__name__}:app_from_env", workers)
  Multiprocess(config, sockets=[sock]).run()


@contextlib.contextmanager
def in_thread(store: db.Store, host: str = "127.0.0.1") -> Iterator[int]:
  """The server in a thread of this process on a free port (tests); yields the port."""
  sock = bind(host, 0)
  srv = uvicorn.Server(_config(server.make_app(store)))
  thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  deadline = time.time() + 20
  while not srv.started and thread.is_alive() and time.time() < deadline:
    time.sleep(0.01)
  try:
    yield sock.getsockname()[1]
  finally:
    srv.should_exit = True
    thread.join(10)
    sock.close()
