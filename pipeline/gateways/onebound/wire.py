"""Onebound's ``item_search_img`` / ``upload_img`` wire format: what the client and the sandbox both know.

From api.md section 3 (the official doc and captured answers of the same API family). Where the
real service is silent (its codes for a rate limit, a daily limit, a bad picture), the codes below
marked *sandbox* are the embedded sandbox's own choice; the client does not depend on them to stop
for the day (it reads ``api_info``), and a user can map any code to an action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Path of the search, below the endpoint (``https://api-gw.onebound.cn``).
SEARCH_PATH = "/taobao/item_search_img/"
#: Path of the upload of a Base64 picture (``imgcode``), whose answer gives a URL to search.
UPLOAD_PATH = "/taobao/upload_img/"
#: The API names (``api_name``) of both calls.
SEARCH_API = "item_search_img"
UPLOAD_API = "upload_img"
#: Credentials travel in the query string: a request URL of this gateway is never logged as it is.
KEY_PARAM = "key"
SECRET_PARAM = "secret"
#: The picture to search: a Taobao/Tmall (alicdn) picture URL only.
IMAGE_URL_PARAM = "imgid"
#: The picture to upload, Base64.
IMAGE_CODE_PARAM = "imgcode"
#: ``yes`` (Onebound's default) serves cached answers; ``no`` asks for fresh ones.
CACHE_VALUES: tuple[str, ...] = ("yes", "no")
LANGUAGES: tuple[str, ...] = ("cn", "en", "ru")

#: ``error_code`` of a successful answer (sent as a string or a number).
SUCCESS_CODE = "0000"
#: Known codes: log in (the key or secret is wrong), recharge, no access to this platform.
LOGIN_CODE = "4013"
RECHARGE_CODE = "4016"
NO_ACCESS_CODE = "4005"
#: *sandbox*: too many calls in the app's time window (``reason`` says for how many seconds).
RATE_LIMITED_CODE = "4000"
#: *sandbox*: the day's calls (``api_info`` max) are spent.
DAILY_LIMIT_CODE = "4029"
#: *sandbox*: a parameter is missing or invalid.
BAD_PARAMETER_CODE = "2000"
#: *sandbox*: the picture cannot be read, or ``imgid`` is no platform picture.
BAD_IMAGE_CODE = "5000"
#: *sandbox*: the backend is busy, try again.
BUSY_CODE = "5003"

#: Fields of one hit, as the item_search family sends them (``orginal_price`` sic).
ITEM_FIELDS: tuple[str, ...] = (
    "title", "num_iid", "price", "promotion_price", "orginal_price", "sales", "pic_url", "detail_url",
    "seller_nick", "seller_id", "area", "post_fee",
)

_API_INFO_RE = re.compile(r"today\s*:\s*(\d+)\s+max\s*:\s*(\d+)", re.IGNORECASE)
#: How a rate-limit reason names its wait: the sandbox's (``ban_message``) and the Chinese phrasing ("请10秒后再试").
BAN_SECONDS_RE = re.compile(r"(?:retry after|请)\s*(\d+(?:\.\d+)?)\s*(?:seconds|秒)", re.IGNORECASE)


def ban_message(seconds: int) -> str:
    """The sandbox's reason for a rate limit (the client reads the seconds back from it)."""
    return f"too many calls: retry after {seconds} seconds"


@dataclass(frozen=True)
class ApiInfo:
    """``api_info`` as ``today:7 max:10000``: calls counted today and the day's maximum."""

    today: int
    max: int

    @classmethod
    def parse(cls, value: Any) -> ApiInfo | None:
        match = _API_INFO_RE.search(str(value or ""))
        return cls(int(match.group(1)), int(match.group(2))) if match else None

    def __str__(self) -> str:
        return f"today:{self.today} max:{self.max}"


def code_text(value: Any) -> str:
    """``error_code`` as text whichever type it came as: ``0`` and ``"0000"`` are both success."""
    text = str(value).strip() if value is not None else ""
    if text.isdigit():
        text = text.zfill(4)
    return text
