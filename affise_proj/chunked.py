"""Request bodies sent without a Content-Length (Transfer-Encoding: chunked).

WSGI has no way to say "read to the end" except the wsgi.input_terminated
extension: a server that de-chunks the body itself (gunicorn) sets it. Django
reads CONTENT_LENGTH bytes and takes a missing one as 0, so a chunked
postback would arrive empty. This middleware reads such a body, bounded, and
hands Django the bytes with their length; a body it cannot read is refused,
never dropped.
"""

import io
from collections.abc import Callable, Iterable

from django.conf import settings

# Django's default DATA_UPLOAD_MAX_MEMORY_SIZE, for a deployment that unset it.
DEFAULT_LIMIT = 2_621_440
_READ_SIZE = 64 * 1024


class ChunkedBody:
    """WSGI middleware around the Django application.

    Steps, for a request with a Transfer-Encoding and no Content-Length:
    1. the server did not terminate the input (no wsgi.input_terminated):
       411 Length Required, as reading it could block or drop it;
    2. else read the body up to DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes; over
       that, 413 (Django refuses such a body with a Content-Length too);
    3. else pass it on as if it had come with a Content-Length: every view's
       own limit applies (/postback answers 413 above its 8 KB).
    Every other request passes untouched.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or not environ.get("HTTP_TRANSFER_ENCODING"):
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return _refuse(start_response, "411 Length Required", "A Content-Length is required")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or DEFAULT_LIMIT
        body = _read(environ["wsgi.input"], limit + 1)
        if len(body) > limit:
            return _refuse(
                start_response, "413 Content Too Large", f"Request body exceeds {limit} bytes"
            )
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _read(stream, most: int) -> bytes:
    """Up to ``most`` bytes of ``stream``, reading until it ends (a read may return less)."""
    parts, size = [], 0
    while size < most:
        part = stream.read(min(_READ_SIZE, most - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _refuse(start_response: Callable, status: str, message: str) -> list[bytes]:
    body = message.encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
