"""Alibaba Cloud Image Search, Taobao-Union edition: what the client and the sandbox both know (api.md section 3).

From the product's API reference (SearchByPic / SearchByUrl, "查询操作默认5QPS"), the models of the
official SDK ``alibabacloud-imagesearch20210501`` (parameter and field names, types) and Alibaba
Cloud's common error codes. Signing is in :mod:`pipeline.gateways.aliyun.signing`. Codes marked
*sandbox* are the embedded sandbox's choice where the product publishes none; the client's error
table names them so that a user can see what each does.
"""

from __future__ import annotations

#: RPC style: every action is a POST of form data to the endpoint's root.
PATH = "/"
API_VERSION = "2021-05-01"
SEARCH_BY_PIC = "SearchByPic"
SEARCH_BY_URL = "SearchByUrl"
ACTIONS: tuple[str, ...] = (SEARCH_BY_PIC, SEARCH_BY_URL)
#: The product's own endpoint (the region the API reference names; others are imagesearch.<region>.aliyuncs.com).
PUBLIC_ENDPOINT = "https://imagesearch.cn-shanghai.aliyuncs.com"

#: Business parameters (SearchByPicRequest / SearchByUrlRequest of the SDK).
PIC_CONTENT_PARAM = "PicContent"
PIC_URL_PARAM = "PicUrl"
CATEGORY_PARAM = "CategoryId"
START_PARAM = "Start"
NUM_PARAM = "Num"
#: ``Start`` is 0..499 and ``Num`` 1..20 (default 10): at most 25 pages of 20.
MAX_START = 499
MAX_NUM = 20
DEFAULT_NUM = 10
#: Fields every answer has, asked for or not; ``Fields`` asks for more, separated by commas.
DEFAULT_FIELDS: tuple[str, ...] = ("PicUrl", "ReservePrice", "Title", "Url", "ZkFinalPrice")
#: Every field of ``Data.Auctions[].Result`` (SearchByPicResponseBodyDataAuctionsResult).
RESULT_FIELDS: tuple[str, ...] = (
    "ItemId", "Title", "ShortTitle", "SubTitle", "PicUrl", "Url", "ReservePrice", "ZkFinalPrice",
    "PriceAfterCoupon", "Volume", "Nick", "ShopTitle", "SellerId", "UserType", "Provcity", "CategoryName",
    "LevelOneCategoryName", "CouponAmount", "CouponInfo", "CouponStartFee", "CouponStartTime", "CouponEndTime",
    "CouponTotalCount", "CouponRemainCount", "CouponShareUrl", "CommissionRate", "MaxCommission", "DeeplinkUrl",
    "DeeplinkCouponShareUrl",
)
#: ``UserType`` of a seller: 1 Tmall, 0 Taobao (a request's UserType keeps only those).
TMALL, TAOBAO = 1, 0
#: Largest picture the product takes, and the sides it takes (pixels).
MAX_PICTURE_BYTES = 4 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 100, 4096
#: The product's default limit on searches per second per account.
DEFAULT_QPS = 5
#: A Taobao-Union PID: ``mm_<account>_<site>_<adzone>``.
PID_PATTERN = r"mm_[0-9]+_[0-9]+_[0-9]+"

#: Error codes (``Code`` of the error body, with its HTTP status). Alibaba Cloud's common codes:
MISSING_PARAMETER = "MissingParameter"
INVALID_PARAMETER = "InvalidParameter"
INCOMPLETE_SIGNATURE = "IncompleteSignature"
SIGNATURE_MISMATCH = "SignatureDoesNotMatch"
NONCE_USED = "SignatureNonceUsed"
TIMESTAMP_EXPIRED = "InvalidTimeStamp.Expired"
TIMESTAMP_FORMAT = "InvalidTimeStamp.Format"
ACCESS_KEY_NOT_FOUND = "InvalidAccessKeyId.NotFound"
ACTION_NOT_FOUND = "InvalidAction.NotFound"
VERSION_NOT_FOUND = "InvalidVersion"
THROTTLING_USER = "Throttling.User"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
INTERNAL_ERROR = "InternalError"
FORBIDDEN = "Forbidden.RAM"
#: Image Search's own: a picture whose sides the product does not take.
UNSUPPORTED_PIXELS = "UnsupportedPicPixels"
#: *sandbox*: a picture that cannot be decoded (or a PicUrl that is none).
INVALID_PICTURE = "InvalidPicFormat"
#: *sandbox*: the account's calls for the day are spent (the sandbox's --daily-max; the product bills
#: per call and publishes no daily limit).
QUOTA_EXHAUSTED = "QuotaExhausted"

#: The HTTP status of each error code.
STATUS: dict[str, int] = {
    MISSING_PARAMETER: 400, INVALID_PARAMETER: 400, INCOMPLETE_SIGNATURE: 400, SIGNATURE_MISMATCH: 400,
    NONCE_USED: 400, TIMESTAMP_EXPIRED: 400, TIMESTAMP_FORMAT: 400, ACCESS_KEY_NOT_FOUND: 404,
    ACTION_NOT_FOUND: 404, VERSION_NOT_FOUND: 400, THROTTLING_USER: 400, SERVICE_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500, FORBIDDEN: 403, UNSUPPORTED_PIXELS: 400, INVALID_PICTURE: 400, QUOTA_EXHAUSTED: 403,
}
#: Response header of a throttled answer: milliseconds to wait (the official SDK reads it as its retry delay).
RETRY_AFTER_HEADER = "x-acs-retry-after"
