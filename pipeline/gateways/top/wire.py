"""The TOP router's wire format: what the client and the sandbox both know (api.md sections 1 and 5).

Signing and timestamps are in :mod:`pipeline.gateways.top.signing`.
"""

from __future__ import annotations

#: The router's path (``https://eco.taobao.com/router/rest``).
ROUTER_PATH = "/router/rest"
SEARCH_METHOD = "taobao.image.search"
UPLOAD_METHOD = "taobao.upload.img"
METHODS: tuple[str, ...] = (SEARCH_METHOD, UPLOAD_METHOD)
#: Parameters every call carries beside its business ones (``sign`` last, over all the others).
COMMON_PARAMS: tuple[str, ...] = ("app_key", "timestamp", "format", "v", "sign_method", "sign")
API_VERSION = "2.0"
#: Fields of one ``taobao.image.search`` hit, in the article's order.
ITEM_FIELDS: tuple[str, ...] = (
    "title", "pic_url", "price", "sales", "num_iid", "detail_url", "seller_nick", "is_tmall",
)
#: Business parameters of the two methods.
IMAGE_DATA_PARAM = "image_data"
UPLOAD_URL_PARAM = "image_url"
UPLOAD_IMAGE_PARAM = "image"

#: Code 7's sub codes (App Call Limited): this app's quota for the day; the platform's limit on a
#: method, whose sub_msg says "This ban will last for N more seconds"; this app's limit on one method.
APP_QUOTA_SUB_CODE = "accesscontrol.limited-by-app-access-count"
API_LIMIT_SUB_CODE = "accesscontrol.limited-by-api-access-count"
APP_API_LIMIT_SUB_CODE = "accesscontrol.limited-by-app-api-access-count"
#: Remote errors that TOP SDKs retry (each also in a ``-tmall`` form).
REMOTE_RETRY_SUB_CODES: tuple[str, ...] = (
    "isp.top-remote-connection-timeout",
    "isp.top-remote-service-unavailable",
    "isp.top-remote-unknown-error",
    "isp.remote-connection-error",
)


def response_key(method: str) -> str:
    """``taobao.image.search`` -> ``image_search_response``: the envelope key of a success answer."""
    name = method[len("taobao."):] if method.startswith("taobao.") else method
    return name.replace(".", "_") + "_response"


def ban_message(seconds: int) -> str:
    """The sub_msg of a ban, as TOP words it (the client reads the seconds back from it)."""
    return f"This ban will last for {seconds} more seconds"
