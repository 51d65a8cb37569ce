"""hashicorp/http-echo: answer every request with one fixed text.

``python -m kubewire.workloads.httpecho -text=hello [-listen=:5678] [-status-code=200]``

As upstream (v1.0): the text comes from ``-text`` or, failing that, ``ECHO_TEXT`` (neither: exit 127);
every path answers ``<text>\\n`` with ``-status-code`` and the ``X-App-Name``/``X-App-Version``
headers; ``/health`` answers ``{"status":"ok"}``. Flags are Go ``flag`` flags (one or two dashes,
``=`` optional; positional arguments are an error, exit 127). One access-log line per request goes to
stdout in upstream's format. SIGTERM or SIGINT shut the server down and exit 2, as upstream does
("it was an interrupt, so don't exit cleanly").
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubewire.workloads import _runtime

if TYPE_CHECKING:
    from kubewire.workloads._http import Request, Response

APP_NAME = "http-echo"
APP_VERSION = "1.0.0"
USAGE = """Usage of /http-echo:
  -listen string
    \taddress and port to listen (default ":5678")
  -status-code int
    \thttp response code, e.g.: 200 (default 200)
  -text string
    \ttext to put on the webpage
  -version
    \tdisplay version information
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    spec: dict[str, _runtime.FlagValue] = {"listen": ":5678", "text": "", "version": False, "status-code": 200}
    try:
        flags, positional = _runtime.parse_flags(args, spec, interspersed=False)
    except _runtime.FlagError as err:
        sys.stderr.write(f"{err}\n{USAGE}")
        return 2
    if flags["version"]:
        sys.stderr.write(f"{APP_NAME} v{APP_VERSION} ()\n")
        return 0
    import os

    text = str(flags["text"]) or os.environ.get("ECHO_TEXT", "")
    if not text:
        sys.stderr.write("Missing -text option or ECHO_TEXT env var!\n")
        return 127
    if positional:
        sys.stderr.write("Too many arguments!\n")
        return 127
    listen = str(flags["listen"])
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        _runtime.go_log(f"[ERR] server exited with: listen tcp: address {listen}: missing port in address")
        return 1
    _runtime.import_asyncio(tls=False)
    import asyncio

    try:
        return asyncio.run(_serve(host.strip("[]") or None, port, text, int(flags["status-code"]), listen))
    except OSError as err:
        _runtime.go_log(f"[ERR] server exited with: listen tcp {listen}: bind: {(err.strerror or str(err)).lower()}")
        return 1


async def _serve(host: str | None, port: int, text: str, status: int, listen: str) -> int:
    import asyncio

    from kubewire.workloads import _http

    app_headers = [("X-App-Name", APP_NAME), ("X-App-Version", APP_VERSION)]
    page = (text + "\n").encode()

    async def handle(request: Request) -> Response:
        if request.path == "/health":
            return _http.Response(200, b'{"status":"ok"}\n', app_headers)
        start = time.monotonic()
        response = _http.Response(status, page, app_headers)
        elapsed = _runtime.format_duration(time.monotonic() - start)
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        agent = request.header("user-agent")
        _runtime.log(
            f'{stamp} {request.host} {request.remote} "{request.method} {request.path} {request.proto}" '
            f'{status} {len(page)} "{agent}" {elapsed}'
        )
        return response

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _runtime.go_log(f"[INFO] server is listening on {listen}")
    await _http.serve_forever([_http.Listener(port, handle, host=host)], stop)
    _runtime.go_log("[INFO] received interrupt, shutting down...")
    return 2


if __name__ == "__main__":
    sys.exit(main())
