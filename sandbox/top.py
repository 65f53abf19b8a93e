"""The TOP router protocol (``/router/rest``): checks in real TOP's order, both code tables, JSON and XML answers.

As real TOP clients send them (api.md section 5): common parameters in the query string or the
body, file parts (``byte[]`` arguments) left out of the signature, an empty value signed as its
bare key or left out, ``simplify=true`` answers without the ``<method>_response`` wrapper, and
XML, TOP's default format, unless ``format=json``.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.gateways.top.signing import SIGN_METHODS, parse_top_timestamp, verify
from pipeline.gateways.top.wire import (
    API_LIMIT_SUB_CODE,
    API_VERSION,
    APP_QUOTA_SUB_CODE,
    IMAGE_DATA_PARAM,
    METHODS,
    REMOTE_RETRY_SUB_CODES,
    SEARCH_METHOD,
    UPLOAD_IMAGE_PARAM,
    UPLOAD_URL_PARAM,
    ban_message,
    response_key,
)
from sandbox.accounts import Accounts
from sandbox.calls import XML_TYPE, Answer, Call, Fetcher, json_answer, new_request_id, parse_page
from sandbox.config import SandboxConfig
from sandbox.models import ImageSearchBackend, MalformedImageReference, UnknownImageReference, decode_base64
from sandbox.search import ImageDecodeError

logger = logging.getLogger(__name__)

PROTOCOL = "top"
FORMATS: tuple[str, ...] = ("json", "xml")


@dataclass(frozen=True)
class ErrorCode:
    code: int
    msg: str
    sub_code: str


#: What went wrong (the sandbox's own names) -> code, msg and default sub_code, per code table.
#: ``article``: the source article's table (11, 15, 16, 21), completed with real TOP codes that do
#: not collide with it (15 and 21 mean something else there, so a missing method is 22, not 21).
#: ``top``: real TOP's table (api.md section 1). ``{name}`` in a sub_code is the offending parameter.
CODE_TABLES: dict[str, dict[str, ErrorCode]] = {
    "article": {
        "missing_method":       ErrorCode(22, "Missing Method", "isv.missing-method"),
        "invalid_method":       ErrorCode(22, "Invalid Method", "isv.invalid-method"),
        "missing_app_key":      ErrorCode(28, "Missing App Key", "isv.missing-app-key"),
        "invalid_app_key":      ErrorCode(29, "Invalid App Key", "isv.appkey-not-exists"),
        "missing_timestamp":    ErrorCode(30, "Missing Timestamp", "isv.missing-timestamp"),
        "invalid_timestamp":    ErrorCode(31, "Invalid Timestamp", "isv.invalid-timestamp"),
        "missing_signature":    ErrorCode(15, "Signature Error", "isv.missing-signature"),
        "invalid_signature":    ErrorCode(15, "Signature Error", "isv.invalid-signature"),
        "permission_denied":    ErrorCode(11, "Insufficient Permissions", "isv.permission-api-package-limit"),
        "quota_exceeded":       ErrorCode(16, "Call Frequency Exceeded", API_LIMIT_SUB_CODE),
        "daily_quota_exceeded": ErrorCode(7, "App Call Limited", APP_QUOTA_SUB_CODE),
        "missing_argument":     ErrorCode(40, "Missing Required Arguments", "isv.missing-parameter:{name}"),
        "invalid_argument":     ErrorCode(41, "Invalid Arguments", "isv.invalid-parameter:{name}"),
        "invalid_image":        ErrorCode(21, "Image Format Not Supported", "isv.invalid-image-format"),
        "service_unavailable":  ErrorCode(10, "Service Currently Unavailable", "isp.service-unavailable"),
        "remote_error":         ErrorCode(10, "Service Currently Unavailable", "isp.service-unavailable"),
    },
    "top": {
        "missing_method":       ErrorCode(21, "Missing Method", "isv.missing-method"),
        "invalid_method":       ErrorCode(22, "Invalid Method", "isv.invalid-method"),
        "missing_app_key":      ErrorCode(28, "Missing App Key", "isv.missing-app-key"),
        "invalid_app_key":      ErrorCode(29, "Invalid App Key", "isv.appkey-not-exists"),
        "missing_timestamp":    ErrorCode(30, "Missing Timestamp", "isv.missing-timestamp"),
        "invalid_timestamp":    ErrorCode(31, "Invalid Timestamp", "isv.invalid-timestamp"),
        "missing_signature":    ErrorCode(25, "Invalid Signature", "isv.missing-signature"),
        "invalid_signature":    ErrorCode(25, "Invalid Signature", "isv.invalid-signature"),
        "permission_denied":    ErrorCode(11, "Insufficient ISV Permissions", "isv.permission-api-package-limit"),
        "quota_exceeded":       ErrorCode(7, "App Call Limited", API_LIMIT_SUB_CODE),
        "daily_quota_exceeded": ErrorCode(7, "App Call Limited", APP_QUOTA_SUB_CODE),
        "missing_argument":     ErrorCode(40, "Missing Required Arguments", "isv.missing-parameter:{name}"),
        "invalid_argument":     ErrorCode(41, "Invalid Arguments", "isv.invalid-parameter:{name}"),
        "invalid_image":        ErrorCode(41, "Invalid Arguments", "isv.invalid-parameter:{name}"),
        "service_unavailable":  ErrorCode(10, "Service Currently Unavailable", "isp.service-unavailable"),
        "remote_error":         ErrorCode(15, "Remote Service Error", "isp.remote-service-error"),
    },
}


class TopError(Exception):
    """A TOP ``error_response``: ``kind`` is a key of the code tables, ``name`` the parameter at fault."""

    def __init__(self, kind: str, sub_msg: str, name: str = "", sub_code: str | None = None) -> None:
        super().__init__(f"{kind}: {sub_msg}")
        self.kind = kind
        self.sub_msg = sub_msg
        self.name = name
        self.sub_code = sub_code

    def envelope(self, codes: str, request_id: str) -> dict[str, dict[str, object]]:
        """``{"error_response": {code, msg, sub_code, sub_msg, request_id}}`` in table ``codes``."""
        entry = CODE_TABLES[codes][self.kind]
        return {
            "error_response": {
                "code": entry.code,
                "msg": entry.msg,
                "sub_code": self.sub_code or entry.sub_code.format(name=self.name),
                "sub_msg": self.sub_msg,
                "request_id": request_id,
            }
        }


def to_xml(envelope: Mapping[str, Any]) -> bytes:
    """TOP's XML for a JSON envelope: one element per key; a list becomes repeated elements and
    marks its parent ``list="true"`` (``{"items": {"item": [..]}}`` -> ``<items list="true"><item>..``)."""
    ((root_name, body),) = envelope.items()
    root = ET.Element(root_name)
    _xml_fill(root, body)
    return ('<?xml version="1.0" encoding="utf-8" ?>' + ET.tostring(root, encoding="unicode")).encode("utf-8")


def _xml_fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            if isinstance(child, list):
                element.set("list", "true")
                for entry in child:
                    _xml_fill(ET.SubElement(element, key), entry)
            else:
                _xml_fill(ET.SubElement(element, key), child)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


class TopProtocol:
    """Checks a router call like real TOP and runs it against the backend."""

    def __init__(
        self,
        config: SandboxConfig,
        backend: ImageSearchBackend,
        accounts: Accounts,
        fetch: Fetcher,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.backend = backend
        self.accounts = accounts
        self.fetch = fetch
        self._now = now

    def record(self, call: Call) -> None:
        """Count the call in the stats (before any check: faulted and refused calls count too)."""
        self.accounts.stats.record_call(PROTOCOL, call.params.get("method", ""), call.params.get("app_key", ""))

    def _answer(self, call: Call, envelope: dict[str, Any]) -> Answer:
        """The envelope in the format the call asked for (XML when it named none, as on TOP)."""
        if call.params.get("format", "").lower() == "json":
            return json_answer(envelope)
        return Answer(to_xml(envelope), XML_TYPE)

    def error_answer(self, call: Call, error: TopError) -> Answer:
        envelope = error.envelope(self.config.codes, new_request_id())
        self.accounts.stats.errors[str(envelope["error_response"]["code"])] += 1
        return self._answer(call, envelope)

    def too_large(self, call: Call, limit: int) -> Answer:
        """The answer to a body dropped unread for its size."""
        error = TopError("invalid_argument", f"request body is larger than {limit} bytes", "body")
        return self.error_answer(call, error)

    def remote_error(self, call: Call, variant: float) -> Answer:
        """A transient backend failure (the remote fault): on TOP's table one of the remote sub codes its SDKs retry."""
        sub_code = None
        if self.config.codes == "top":
            forms = [*REMOTE_RETRY_SUB_CODES, *(f"{code}-tmall" for code in REMOTE_RETRY_SUB_CODES)]
            sub_code = forms[min(len(forms) - 1, int(variant * len(forms)))]
        error = TopError("remote_error", "transient backend failure, retry later", sub_code=sub_code)
        return self.error_answer(call, error)

    def garbage_body(self) -> bytes:
        """What a truncated answer starts as (the garbage and drop faults cut it short)."""
        envelope = {response_key(SEARCH_METHOD): {"items": {"item": [{"title": "x"}]}, "total_results": "1"}}
        return json_answer(envelope).body

    def internal_error(self, call: Call) -> Answer:
        return self.error_answer(call, TopError("service_unavailable", "internal sandbox error"))

    async def handle(self, call: Call) -> Answer:
        """The answer to one call (success or ``error_response``); never raises TopError."""
        params = call.params
        try:
            method = self.authenticate(call)
            if method == SEARCH_METHOD:
                body = self.image_search(call)
            else:
                body = await self.upload_img(call)
        except TopError as error:
            logger.info("error_response %s for %s", error, params.get("method"))
            return self.error_answer(call, error)
        body["request_id"] = new_request_id()
        envelope = {response_key(method): body}
        if params.get("simplify", "").lower() == "true" and params.get("format", "").lower() == "json":
            return json_answer(body)  # simplify: no wrapper (XML keeps its root element)
        return self._answer(call, envelope)

    # -- common parameters, in real TOP's order ---------------------------------------------------

    def authenticate(self, call: Call) -> str:
        """Check the common parameters, permissions and quota; return the method. Raises TopError."""
        params = call.params
        fmt = params.get("format", "")
        if fmt and fmt.lower() not in FORMATS:
            raise TopError("invalid_argument", f"format must be json or xml, got {fmt[:20]!r}", "format")
        method = params.get("method", "")
        if not method:
            raise TopError("missing_method", "the method parameter is required")
        if method not in METHODS:
            raise TopError("invalid_method", f"method {method} does not exist", "method")

        app_key = params.get("app_key", "")
        if not app_key:
            raise TopError("missing_app_key", "the app_key parameter is required")
        app = self.accounts.app(app_key)
        if app is None:
            raise TopError("invalid_app_key", f"app_key {app_key} does not exist", "app_key")

        self._check_timestamp(params.get("timestamp", ""))

        sign_method = params.get("sign_method", "")
        if sign_method and sign_method not in SIGN_METHODS:
            raise TopError(
                "invalid_argument", f"sign_method must be one of {', '.join(SIGN_METHODS)}", "sign_method"
            )
        if not params.get("sign"):
            raise TopError("missing_signature", "the sign parameter is required")
        # File parts (a TOP SDK's byte[] arguments) are not signed: only the text parameters are.
        if not verify(params, app.secret):
            raise TopError("invalid_signature", "Invalid signature", "sign")

        version = params.get("v", "")
        if not version:
            raise TopError("missing_argument", "the v parameter is required", "v")
        if version != API_VERSION:
            raise TopError("invalid_argument", f"unsupported API version {version}; use {API_VERSION}", "v")

        if self.accounts.denied(app_key, method):
            raise TopError("permission_denied", f"app {app_key} has no permission for {method}", "method")

        refusal = self.accounts.admit(app)
        if refusal is not None and refusal.daily:
            raise TopError(
                "daily_quota_exceeded",
                f"This app's call quota for today is used up ({self.accounts.daily_max(app)} calls)",
            )
        if refusal is not None:
            raise TopError("quota_exceeded", ban_message(refusal.wait or 1))
        return method

    def _check_timestamp(self, value: str) -> None:
        if not value:
            raise TopError("missing_timestamp", "the timestamp parameter is required")
        try:
            sent = parse_top_timestamp(value)
        except (ValueError, OverflowError, OSError):
            raise TopError(
                "invalid_timestamp",
                "timestamp must be 'YYYY-MM-DD HH:MM:SS' (GMT+8) or epoch milliseconds",
                "timestamp",
            ) from None
        # Whole seconds on both sides: the timestamp has no fraction but the server clock does, and
        # comparing the raw difference made exactly 600 s behind fail while 600 s ahead passed.
        skew = abs(math.floor(self._now().timestamp()) - math.floor(sent.timestamp()))
        if skew > self.config.max_skew_seconds:
            raise TopError(
                "invalid_timestamp",
                f"timestamp {value} is {skew:.0f} s away from the server time (GMT+8); at most "
                f"{self.config.max_skew_seconds:.0f} s of skew is allowed",
                "timestamp",
            )

    # -- business methods ---------------------------------------------------------------------------

    def image_search(self, call: Call) -> dict[str, Any]:
        params = call.params
        image_data = params.get(IMAGE_DATA_PARAM, "")
        upload = call.files.get(IMAGE_DATA_PARAM)
        if not image_data and not upload:
            raise TopError("missing_argument", "the image_data parameter is required", IMAGE_DATA_PARAM)
        page = parse_page(params.get("page", ""), lambda message: TopError("invalid_argument", message, "page"))
        try:
            if upload is not None:  # the picture as a file part: searched as its bytes
                image_data = self.backend.upload(upload)
            result = self.backend.search(image_data, params.get("cat") or None, page, call.host)
        except (ImageDecodeError, UnknownImageReference) as exc:
            raise TopError("invalid_image", str(exc), IMAGE_DATA_PARAM) from None
        return {"items": {"item": result.items}, "total_results": str(result.total_results)}

    async def upload_img(self, call: Call) -> dict[str, Any]:
        params = call.params
        image, image_url = params.get(UPLOAD_IMAGE_PARAM, ""), params.get(UPLOAD_URL_PARAM, "")
        upload = call.files.get(UPLOAD_IMAGE_PARAM)
        if not image and not image_url and upload is None:
            raise TopError("missing_argument", "image_url or image (Base64 or a file) is required", UPLOAD_URL_PARAM)
        name = UPLOAD_URL_PARAM if not image and upload is None else UPLOAD_IMAGE_PARAM
        try:
            if upload is not None:
                data = upload
            elif image:
                data = decode_base64(image)
            elif (local := self._local_image(image_url)) is not None:
                data = local
            else:
                try:
                    data = await self.fetch(image_url)
                except Exception as exc:  # noqa: BLE001 - any fetch failure is the client's bad URL
                    raise ImageDecodeError(f"cannot fetch image_url: {exc}") from None
            upload_id = self.backend.upload(data)
        except (ImageDecodeError, UnknownImageReference) as exc:
            raise TopError("invalid_image", str(exc), name) from None
        return {"image": {"id": upload_id, "url": f"http://{call.host}/upload/{upload_id}.jpg"}}

    def _local_image(self, url: str) -> bytes | None:
        """An image this sandbox itself serves (matched on the path), without a network round trip."""
        try:
            return self.backend.resolve_reference(url)
        except MalformedImageReference:
            # Not a URL at all: there is nothing to fetch either.
            raise
        except UnknownImageReference:
            return None
