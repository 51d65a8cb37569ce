"""nginx as the official image runs it out of the box: the "Welcome to nginx!" page on port 80.

``python -m kubewire.workloads.nginx [--port N]`` (``NGINX_PORT`` also sets the port;
``nginxinc/nginx-unprivileged`` resolves to ``--port 8080``).

The image's ``default.conf`` serves ``/usr/share/nginx/html``: ``/`` and ``/index.html`` are the
welcome page, ``/50x.html`` the error page, anything else nginx's own ``404 Not Found`` page;
GET and HEAD only (other methods: ``405 Not Allowed``). Headers are nginx's (``Server:
nginx/<version>``, ``Last-Modified``, ``ETag``, ``Accept-Ranges``), and each request is logged in
nginx's ``combined`` format plus ``$http_x_forwarded_for``, as the image's ``main`` log format does.
SIGTERM (fast shutdown) and SIGQUIT (graceful) exit 0, as nginx does.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubewire.workloads import _runtime

if TYPE_CHECKING:
    from kubewire.workloads._http import Request, Response

VERSION = "1.27.5"
SERVER = f"nginx/{VERSION}"
# When the image was built: the files' Last-Modified and the first half of their ETag.
FILES_MTIME = 1744732800  # 2025-04-15 16:00:00 UTC

INDEX_HTML = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

ERROR_50X_HTML = b"""<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>
"""

FILES = {"/": INDEX_HTML, "/index.html": INDEX_HTML, "/50x.html": ERROR_50X_HTML}
_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Not Allowed"}


def error_page(status: int) -> bytes:
    """nginx's built-in error page (CRLF line ends, as ngx_http_special_response.c writes them)."""
    title = f"{status} {_REASONS[status]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        f"<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def respond(request: Request) -> Response:
    from kubewire.workloads import _http

    path = request.path
    body = FILES.get(path)
    if body is None:
        return _http.Response(404, error_page(404), [("Server", SERVER), ("Content-Type", "text/html")])
    if request.method not in ("GET", "HEAD"):
        return _http.Response(405, error_page(405), [("Server", SERVER), ("Content-Type", "text/html")])
    headers = [
        ("Server", SERVER),
        ("Content-Type", "text/html"),
        ("Last-Modified", _http.http_date(FILES_MTIME)),
        ("ETag", f'"{FILES_MTIME:x}-{len(body):x}"'),
        ("Accept-Ranges", "bytes"),
    ]
    return _http.Response(200, body, headers)


def access_log(request: Request, response: Response) -> None:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
    "$http_user_agent" "$http_x_forwarded_for"``."""
    client = request.remote.rsplit(":", 1)[0].strip("[]")
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    sent = 0 if request.method == "HEAD" else len(response.body)

    def field(name: str) -> str:
        return request.header(name) or "-"

    _runtime.log(
        f'{client} - - [{stamp}] "{request.method} {request.target} {request.proto}" {response.status} {sent} '
        f'"{field("referer")}" "{field("user-agent")}" "{field("x-forwarded-for")}"'
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    port = int(os.environ.get("NGINX_PORT") or 80)
    if "--port" in args[:-1]:
        port = int(args[args.index("--port") + 1])
    for arg in args:
        if arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
    _runtime.import_asyncio(tls=False)
    import asyncio

    try:
        return asyncio.run(_serve(port))
    except OSError as err:
        sys.stderr.write(f"nginx: [emerg] bind() to 0.0.0.0:{port} failed ({err.errno}: {err.strerror})\n")
        return 1


async def _serve(port: int) -> int:
    import asyncio

    from kubewire.workloads import _http

    async def handle(request: Request) -> Response:
        response = respond(request)
        access_log(request, response)
        return response

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(signum, stop.set)
    _runtime.log("/docker-entrypoint.sh: Configuration complete; ready for start up")
    await _http.serve_forever([_http.Listener(port, handle)], stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
