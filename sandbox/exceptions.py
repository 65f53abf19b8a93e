"""TOP error codes as data: the article's table and real TOP's, and the exception that renders them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    code: int
    msg: str
    sub_code: str


#: What went wrong (the sandbox's own names) → code, msg and default sub_code, per code table.
#: ``article``: the source article's table (11, 15, 16, 21), completed with real TOP codes that do
#: not collide with it (15 and 21 mean something else there, so a missing method is 22, not 21).
#: ``top``: real TOP's table (api.md §1).  ``{name}`` in a sub_code is the offending parameter.
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
        "quota_exceeded":       ErrorCode(16, "Call Frequency Exceeded", "accesscontrol.limited-by-api-access-count"),
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
        "quota_exceeded":       ErrorCode(7, "App Call Limited", "accesscontrol.limited-by-api-access-count"),
        "missing_argument":     ErrorCode(40, "Missing Required Arguments", "isv.missing-parameter:{name}"),
        "invalid_argument":     ErrorCode(41, "Invalid Arguments", "isv.invalid-parameter:{name}"),
        "invalid_image":        ErrorCode(41, "Invalid Arguments", "isv.invalid-parameter:{name}"),
        "service_unavailable":  ErrorCode(10, "Service Currently Unavailable", "isp.service-unavailable"),
        "remote_error":         ErrorCode(15, "Remote Service Error", "isp.remote-service-error"),
    },
}


class TopError(Exception):
    """A TOP ``error_response``: ``kind`` is a key of the code tables, ``name`` the parameter at fault."""

    def __init__(self, kind: str, sub_msg: str, name: str = "") -> None:
        super().__init__(f"{kind}: {sub_msg}")
        self.kind = kind
        self.sub_msg = sub_msg
        self.name = name

    def envelope(self, codes: str, request_id: str) -> dict[str, dict[str, object]]:
        """``{"error_response": {code, msg, sub_code, sub_msg, request_id}}`` in table ``codes``."""
        entry = CODE_TABLES[codes][self.kind]
        return {
            "error_response": {
                "code": entry.code,
                "msg": entry.msg,
                "sub_code": entry.sub_code.format(name=self.name),
                "sub_msg": self.sub_msg,
                "request_id": request_id,
            }
        }
