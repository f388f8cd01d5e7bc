"""`fleetd events`: tail the live job events of a running daemon in a terminal.

Connects with trio-websocket to `GET /api/v1/admin/jobs/events` of the daemon whose API
the state directory records (`<state_dir>/http.json`), or of `--url`. The token is
`--token`, else $FLEETD_TOKEN, else one minted with the configured HS* secret (what
`fleetd token` prints; minted again when it expires). It asks for batch frames
(`?batch=1`: a JSON array of events per frame, so a busy stream costs the daemon fewer
frames) and prints one line per event — time, type, job id, job type, status — or with
`--json` each event as a JSON object on its own line (and the `subscribed`, `gap` and
`error` frames as they came). A line "following <url>" goes to stderr at each
connection.

After a close with 1013 (fell behind, too many subscribers, Redis unavailable), 1001
(the daemon stopped) or a dropped connection it reconnects with `last_event_id`, so the
daemon replays what was missed: nothing lost, nothing twice (a `gap` notice if the
stream was trimmed meanwhile). Between attempts it waits 0.1 s doubling to 5 s, and
starts over from 0.1 s only once an event has arrived: a daemon that accepts the
handshake and closes at once (full, Redis down) is not retried ten times a second.

Exit: Ctrl-C 0; its stdout closed by its reader (`| head -1`) 0; the API unreachable at
start, or the handshake refused (auth, a bad filter): one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlencode, urlsplit

from fleetd.cli.common import fail

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

    from fleetd.config import Config

# fleetd.config.ENV_TOKEN, spelled out for the parser's help: importing the config
# package costs every command's parser ~30 ms (tests/cli/test_cli.py pins the two).
TOKEN_VARIABLE = "FLEETD_TOKEN"

__all__ = ["add_parser", "connect", "run"]

FEED_PATH = "/api/v1/admin/jobs/events"
# A token minted here lives this long; the daemon closes the socket at its exp (1008)
# and we mint another and resume.
MINTED_TTL = 3600.0
# Reconnect waits: from 0.1 s doubling to 5 s (a restarting daemon is back in ~1 s). One
# terminal per operator: no jitter needed, unlike the dashboard's many tabs.
RETRY_FIRST, RETRY_CAP = 0.1, 5.0
CLOSE_EXPIRED = 1008
# An event of a batch frame printed with --json: as the daemon serializes it.
_COMPACT = (",", ":")


class _Fail(Exception):
    pass


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("events", help="tail the live job events of a running daemon")
    p.add_argument("--type", action="append", default=[], help="job type (repeatable)")
    p.add_argument("--status", action="append", default=[], help="job status (repeatable)")
    p.add_argument("--job", action="append", default=[], help="job id (repeatable)")
    p.add_argument("--company", help="only this company's events (platform token)")
    p.add_argument("--json", action="store_true", help="print each frame as JSON")
    p.add_argument("--url", help="the daemon's API, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", help=f"bearer token (default: ${TOKEN_VARIABLE}, else minted)")


def _base_url(cfg: Config, a: argparse.Namespace) -> str:
    if a.url:
        url = str(a.url)
    else:
        from fleetd.api.server import HTTP_FILE

        path = cfg.state_dir / HTTP_FILE
        try:
            urls = json.loads(path.read_text())["urls"]
        except (OSError, ValueError, KeyError):
            raise _Fail(f"no running daemon's API recorded in {path}; give --url") from None
        url = next((u for u in urls if u.startswith(("http://", "https://"))), "")
        if not url:
            raise _Fail(f"the daemon serves no TCP address ({', '.join(urls)}); give --url")
    if not url.startswith(("http://", "https://", "ws://", "wss://")):
        raise _Fail(f"--url must start with http:// or https://, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range or not a number raises)
    except ValueError as exc:
        raise _Fail(f"--url {url!r} is not a valid URL: {exc}") from None
    if not parts.hostname or any(c.isspace() or not c.isprintable() for c in url):
        raise _Fail(f"--url {url!r} is not a valid URL")
    return "ws" + url.rstrip("/").removeprefix("http")


def _mint(cfg: Config) -> str:
    from fleetd.api.auth import mint_token

    try:
        return mint_token(cfg, ttl=MINTED_TTL, subject="fleetd-events")[0]
    except (ValueError, OSError) as exc:
        raise _Fail(f"cannot mint a token: {exc}; give --token") from None


@asynccontextmanager
async def connect(
    url: str, token: str | None, headers: Sequence[tuple[bytes, bytes]] = ()
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to `url` (with the bearer token, if any), closed at the end."""
    # trio and trio-websocket are imported where used (here and below): ~50 ms that no
    # other command needs (bench/cli_startup.py); no cycle (tests/test_architecture.py).
    from trio_websocket import HandshakeError, open_websocket_url

    extra = [(b"Authorization", f"Bearer {token}".encode())] if token else []
    ws: WebSocketConnection | None = None
    try:
        async with open_websocket_url(url, extra_headers=[*extra, *headers]) as ws:
            yield ws
    except HandshakeError as exc:
        # A refused handshake leaks its socket in trio-websocket 0.12 too; the
        # connection that holds it is only reachable from the traceback.
        refused = _connection_in(exc)
        if refused is not None:
            await refused._stream.aclose()
        raise
    finally:
        if ws is not None:
            # trio-websocket 0.12 never closes the TCP socket of a connection the server
            # closed first (it waits for the server's FIN, then leaks it) — and the
            # server may close while the client closes. Closing the stream again once
            # trio-websocket is done is harmless (aclose is idempotent) and never leaks.
            await ws._stream.aclose()


def _connection_in(exc: BaseException) -> WebSocketConnection | None:
    """The WebSocketConnection whose method raised `exc` (or None)."""
    from trio_websocket import WebSocketConnection

    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, WebSocketConnection):
            return candidate
        tb = tb.tb_next
    return None


def _line(frame: dict[str, Any]) -> str:
    from fleetd.jobs.model import format_ts

    cells = [format_ts(frame.get("ts")) or "-", frame.get("type") or "-"]
    cells += [str(frame.get(k) or "-") for k in ("job_id", "job_type", "status")]
    return "  ".join(cells)


class Tail:
    def __init__(self, cfg: Config, a: argparse.Namespace, out: TextIO) -> None:
        self.cfg = cfg
        self.a = a
        self.out = out
        self.base = _base_url(cfg, a)  # read again at each reconnect: a restarted
        # daemon may listen on another port (port 0), and http.json says which
        given = a.token or os.environ.get(TOKEN_VARIABLE)
        self.minted = not given
        self.token = given or _mint(cfg)
        self.last: str | None = None

    def _url(self) -> str:
        a = self.a
        query: list[tuple[str, str]] = [("batch", "1")]
        query += [("type", t) for t in a.type]
        query += [("status", s) for s in a.status] + [("job_id", j) for j in a.job]
        if a.company:
            query.append(("company_id", a.company))
        if self.last is not None:
            query.append(("last_event_id", self.last))
        return self.base + FEED_PATH + "?" + urlencode(query)

    def _show(self, frame: dict[str, Any], raw: str) -> None:
        kind = frame.get("type")
        if kind == "subscribed":
            self.last = self.last or frame.get("last_event_id")
            print(f"fleetd: events: following {self.base}", file=sys.stderr, flush=True)
            if self.a.json:
                print(raw, file=self.out, flush=True)
            return
        if "id" in frame:
            self.last = frame["id"]
        elif kind == "gap":
            print(f"fleetd: events: gap: the stream was trimmed ({frame.get('data')})",
                  file=sys.stderr)  # fmt: skip
        print(raw if self.a.json else _line(frame), file=self.out, flush=True)

    async def _pause(self, seconds: float) -> None:
        """The wait before the next attempt."""
        import trio

        await trio.sleep(seconds)

    async def run(self) -> int:
        from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

        connected = False
        wait = RETRY_FIRST
        while True:
            try:
                if connected:
                    self.base = _base_url(self.cfg, self.a)
                async with connect(self._url(), self.token) as ws:
                    connected = True
                    while True:
                        raw = str(await ws.get_message())
                        frame = json.loads(raw)
                        if isinstance(frame, list):
                            for ev in frame:
                                compact = json.dumps(ev, ensure_ascii=False, separators=_COMPACT)
                                self._show(ev, compact)
                        else:
                            self._show(frame, raw)  # a control frame, or a single event
                        if isinstance(frame, list) or "id" in frame:
                            wait = RETRY_FIRST  # events flow: this connection worked
            except ConnectionRejected as exc:
                if exc.status_code == 503 and connected:  # a daemon starting: Redis soon
                    await self._pause(wait)
                    wait = min(RETRY_CAP, wait * 2)
                    continue
                try:
                    message = json.loads(exc.body or b"{}")["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = (exc.body or b"").decode(errors="replace")[:200]
                raise _Fail(f"refused ({exc.status_code}): {message}") from None
            except ConnectionClosed as exc:
                if exc.reason is not None and exc.reason.code == CLOSE_EXPIRED:
                    if not self.minted:
                        raise _Fail("the token expired") from None
                    self.token = _mint(self.cfg)
                    continue
            except BrokenPipeError:
                raise  # stdout's reader went away (`| head -1`): done, not a lost link
            except (HandshakeError, OSError, _Fail) as exc:
                if not connected:
                    if isinstance(exc, _Fail):
                        raise
                    raise _Fail(f"cannot connect to {self.base}: {exc.__cause__ or exc}") from None
            await self._pause(wait)
            wait = min(RETRY_CAP, wait * 2)


def run(cfg: Config, a: argparse.Namespace) -> int:
    import trio

    try:
        tail = Tail(cfg, a, sys.stdout)
        return trio.run(tail.run)
    except _Fail as exc:
        fail(f"events: {exc}")  # one line, exit 2
    except KeyboardInterrupt:
        return 0
