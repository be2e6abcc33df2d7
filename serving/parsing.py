"""Request parsing for `imgpipe serve`, without the web framework.

Plain functions over headers, bytes and decoded JSON: each returns checked
`Item`s or raises `InputRejected` carrying the HTTP status and the message
the client gets as {"error": ...}. app.py only moves bytes in and out.

The JSON body is TF Serving's REST shape {"instances": [...]}: each instance
is {"b64": "<base64 image bytes>"} or a uint8 pixel array [h][w][c]. An upload
is multipart/form-data with one or more `file` fields.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from imgpipe.serving import model as served
from imgpipe.serving.model import InputRejected

# An uploaded file as the form parser hands it over: (filename, contents).
UploadedFile = Tuple[Optional[str], bytes]


@dataclasses.dataclass
class Item:
    """One image of a request, checked: encoded bytes or uint8 pixels."""
    data: Optional[bytes] = None
    pixels: Optional[np.ndarray] = None

    @property
    def payload(self) -> served.ModelInput:
        return self.data if self.data is not None else self.pixels


# -- any request ----------------------------------------------------------------

def check_model_name(name: str, served_name: str) -> None:
    if name != served_name:
        raise InputRejected(404, f"no model {name!r} here; this server serves {served_name!r}")


def body_too_large(size: str, max_body_bytes: int) -> InputRejected:
    return InputRejected(413, f"request body is {size} bytes; the limit is {max_body_bytes:,}")


def check_declared_length(content_length: Optional[str], max_body_bytes: int) -> None:
    """Refuses a body whose Content-Length header is over the limit (absent: unchecked)."""
    if content_length and int(content_length) > max_body_bytes:
        raise body_too_large(f"{int(content_length):,}", max_body_bytes)


class BodyBuffer:
    """A request body gathered chunk by chunk and refused as soon as it passes
    the limit: a chunked body has no Content-Length to check first."""

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes, self.size = max_body_bytes, 0
        self._chunks: List[bytes] = []

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_body_bytes:
            raise body_too_large(f"more than {self.max_body_bytes:,}", self.max_body_bytes)
        self._chunks.append(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)


class PixelBudget:
    """The pixels one request may ask the model to decode: its CPU bound, which
    bytes alone are not (a small PNG can be 4096x4096)."""

    def __init__(self, max_pixels: int):
        self.max_pixels, self.used = max_pixels, 0

    def spend(self, pixels: int, what: str) -> None:
        self.used += pixels
        if self.used > self.max_pixels:
            raise InputRejected(413, f"{what}: the request holds more than {self.max_pixels:,} "
                                     "pixels, the limit per request (serving."
                                     "max_pixels_per_request); send fewer or smaller images")


# -- POST :predict, a JSON body -------------------------------------------------

# {"instances": [[[[r, g, b]]]]} is 5 levels deep; a deeper body is no request,
# and one nested thousands deep overflows the parser's recursion.
MAX_JSON_DEPTH = 8
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")   # +1 opens, -1 closes


def json_depth(body: bytes) -> int:
    """How deeply the body's arrays and objects nest (strings skipped), without
    parsing it: bytes-level C work, some ms for 10 MB."""
    brackets = _JSON_STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    steps = np.frombuffer(brackets.translate(_BRACKET_STEPS), np.int8)
    return int(np.cumsum(steps, dtype=np.int32).max()) if steps.size else 0


def instances_of(body: bytes, max_instances: int) -> List[Any]:
    """The `instances` list of a JSON body: non-empty and within the limit."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise InputRejected(400, f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH} "
                                 "({\"instances\": [[h][w][c] arrays]} needs 5)")
    try:
        payload = json.loads(body)
    except RecursionError:   # a guard: json_depth refuses such bodies first
        raise InputRejected(400, f"JSON nested too deep; the limit is {MAX_JSON_DEPTH}") from None
    except ValueError:
        raise InputRejected(400, "body is not JSON; expected {\"instances\": [...]} as TF "
                                 "Serving takes it") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InputRejected(400, "expected {\"instances\": [...]}: a non-empty list of "
                                 "{\"b64\": \"<base64 image bytes>\"} or uint8 pixel arrays")
    if len(instances) > max_instances:
        raise InputRejected(413, f"{len(instances)} instances; the limit is {max_instances} "
                                 "per request")
    return instances


def encoded_item(instance: dict, what: str, limits: served.Limits, budget: PixelBudget) -> Item:
    """{"b64": "..."}: valid base64 of an image that passes the header checks."""
    encoded = instance.get("b64")
    if not isinstance(encoded, str):
        raise InputRejected(400, f"{what}: expected {{\"b64\": \"...\"}}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InputRejected(400, f"{what}: b64 is not valid base64") from None
    budget.spend(served.check_image_bytes(data, limits, what), what)
    return Item(data=data)


def pixels_item(instance: Any, what: str, image_shape: Sequence[int], budget: PixelBudget) -> Item:
    """A nested list of uint8 pixels [h][w][c] of the model's input shape."""
    budget.spend(image_shape[0] * image_shape[1], what)   # any other shape is refused below
    try:
        array = np.asarray(instance)
    except ValueError:
        raise InputRejected(422, f"{what}: a ragged array; expected uint8 pixels "
                                 "[h][w][c]") from None
    return Item(pixels=served.check_one_image(array, image_shape, what))


def parse_instances(body: bytes, max_instances: int, limits: served.Limits,
                    image_shape: Sequence[int]) -> List[Item]:
    """The checked items of a :predict body; the first bad instance refuses it all."""
    items, budget = [], PixelBudget(limits.max_pixels_per_request)
    for index, instance in enumerate(instances_of(body, max_instances)):
        what = f"instances[{index}]"
        items.append(encoded_item(instance, what, limits, budget) if isinstance(instance, dict)
                     else pixels_item(instance, what, image_shape, budget))
    return items


# -- POST /images, a multipart upload -------------------------------------------

def check_upload_length(content_length: Optional[str], max_body_bytes: int) -> None:
    """The form parser reads the whole body before anything can be checked, so
    an upload must declare its length, within the limit."""
    if not content_length:
        raise InputRejected(411, "Content-Length is required: send the multipart upload with "
                                 "its length, not chunked")
    check_declared_length(content_length, max_body_bytes)


def form_refusal(failure: BaseException, max_instances: int) -> InputRejected:
    """What to answer when the multipart parser gives up on a body."""
    # Starlette's MultiPartException (an HTTPException's detail inside an app).
    detail = str(getattr(failure, "message", "") or getattr(failure, "detail", "")
                 or type(failure).__name__)
    if "Too many files" in detail:
        return InputRejected(413, f"more than {max_instances} `file` fields; the limit is "
                                  f"{max_instances} images per request")
    return InputRejected(400, f"expected a multipart/form-data upload with `file` fields "
                              f"({detail})")


async def read_form_files(body: bytes, content_type: str, max_files: int) -> List[UploadedFile]:
    """The `file` fields of a multipart body, by Starlette's form parser
    (python-multipart); what it refuses becomes a 400 or 413 naming why."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
    try:
        form = await Request(scope, receive).form(max_files=max_files)
    except Exception as failure:  # noqa: BLE001 - malformed multipart
        raise form_refusal(failure, max_files) from None
    try:
        fields = form.getlist("file")
        if not all(isinstance(field, UploadFile) for field in fields):
            raise InputRejected(400, "a `file` field holds text; send each image as a file "
                                     "(multipart/form-data, `-F file=@image.png`)")
        return [(field.filename, await field.read()) for field in fields]
    finally:
        await form.close()


def parse_upload_body(body: bytes, content_type: str, max_files: int, max_body_bytes: int,
                      limits: served.Limits) -> List[Item]:
    """The checked items of a multipart body, parsed start to end: what a
    parsing process runs for a large upload."""
    files = asyncio.run(read_form_files(body, content_type, max_files))
    return parse_uploads(files, max_body_bytes, limits)


def parse_uploads(files: Sequence[UploadedFile], max_body_bytes: int,
                  limits: served.Limits) -> List[Item]:
    """The checked items of the `file` fields; the first bad file refuses them all."""
    if not files:
        raise InputRejected(400, "expected one or more `file` fields (multipart/form-data)")
    items, budget = [], PixelBudget(limits.max_pixels_per_request)
    for filename, data in files:
        if len(data) > max_body_bytes:
            raise InputRejected(413, f"{filename}: too large")
        budget.spend(served.check_image_bytes(data, limits, filename or "file"), filename or "file")
        items.append(Item(data=data))
    return items


def warm_up() -> None:
    """Run once in each parsing process as the server starts: imports done."""


# -- after the queue --------------------------------------------------------------

def first_refusal(results: Sequence[Any]) -> Optional[InputRejected]:
    """The batch's refusal of the first refused item, labelled with its index."""
    for index, result in enumerate(results):
        if isinstance(result, InputRejected):
            return InputRejected(result.status, f"instances[{index}]: {result}")
    return None
