"""Client errors the server answers with, and their JSON wire form.

    ServingError                    base: status, machine-readable code, message
     ├── BadRequest               400  malformed JSON, missing url, undecodable image
     │    └── FetchError          400  the url could not or may not be fetched
     ├── NotAcceptable            406  no supported type in Accept
     ├── PayloadTooLarge          413  body over the 6 MiB limit
     └── UnsupportedMediaType     415  Content-Type not handled

A handler module raises these to choose the status; any other exception is a
500 whose details stay in the server log. Bodies are always
``{"error": <code>, "message": <text>}``, never a traceback.
"""


class ServingError(Exception):
    """An error with an HTTP status that is safe to show to the client."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": self.code, "message": self.message}


class BadRequest(ServingError):
    pass


class FetchError(BadRequest):
    code = "url_fetch_failed"


class NotAcceptable(ServingError):
    status, code = 406, "not_acceptable"


class PayloadTooLarge(ServingError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServingError):
    status, code = 415, "unsupported_media_type"
