"""Reading an S3 POST upload's multipart/form-data body, within limits, as S3 reads it.

The body has already been read whole and bounded (the gateway's buffered-body limit); here
python-multipart's streaming parser splits it into parts, with bounds on what a form may
hold before anything is signed or checked: the number of parts, each text field's size,
each part's headers. A body that is not well-formed multipart (truncated, no closing
boundary, a part without a name) is S3's `MalformedPOSTRequest`, never a half-read form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.post_policy import FormPart, PostForm, post_form

MAX_PARTS = 64
MAX_FIELD_BYTES = 20 * 1024  # a text field, the policy included
MAX_PART_HEADERS = 8
MALFORMED = "The body of your POST request is not well-formed multipart/form-data."


def _malformed(detail: str = "") -> Refused:
    return Refused(Reason.MALFORMED_POST, MALFORMED + (f" ({detail})" if detail else ""))


def is_form_upload(method: str, content_type: str) -> bool:
    """A POST of multipart/form-data: S3's browser-form upload."""
    media = content_type.split(";", 1)[0].strip().lower()
    return method == "POST" and media == "multipart/form-data"


@dataclass(slots=True)
class _Parts:
    """What the parser's callbacks collect."""

    parts: list[FormPart] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    is_file: bool = False
    ended: bool = False

    def part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise _malformed(f"more than {MAX_PARTS} parts")
        self.headers, self.data, self.is_file = {}, bytearray(), False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        name = self.header_name.decode("latin-1").strip().lower()
        self.headers[name] = self.header_value.decode("utf-8", "replace").strip()
        self.header_name, self.header_value = bytearray(), bytearray()

    def headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get("content-disposition"))
        name = params.get(b"name")
        if disposition != b"form-data" or not name:
            raise _malformed("a part has no form-data name")
        self.is_file = name.decode("utf-8", "replace").lower() == "file"

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.data += data[start:end]
        if not self.is_file and len(self.data) > MAX_FIELD_BYTES:
            raise Refused(
                Reason.INVALID_ARGUMENT,
                f"iamgate: a form field is longer than {MAX_FIELD_BYTES} bytes",
            )

    def part_end(self) -> None:
        _, params = parse_options_header(self.headers.get("content-disposition"))
        filename = params.get(b"filename")
        self.parts.append(
            FormPart(
                name=params[b"name"].decode("utf-8", "replace"),
                data=bytes(self.data),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=self.headers.get("content-type"),
            )
        )

    def end(self) -> None:
        self.ended = True


def parse_post_form(body: bytes, content_type: str) -> PostForm:
    """The form's fields and file, or S3's refusal for a form it could not read."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _malformed("no boundary in Content-Type")
    collected = _Parts()
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": collected.part_begin,
                "on_header_field": collected.header_field,
                "on_header_value": collected.header_data,
                "on_header_end": collected.header_end,
                "on_headers_finished": collected.headers_finished,
                "on_part_data": collected.part_data,
                "on_part_end": collected.part_end,
                "on_end": collected.end,
            },
            max_header_count=MAX_PART_HEADERS,
        )
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise _malformed(str(exc)[:200]) from None
    if not collected.ended:
        raise _malformed("the closing boundary is missing")
    return post_form(collected.parts)
