"""A second gateway for tests: TOP's wire format, but local images go through taobao.upload.img first.

It shows that a gateway searching only image references (as Onebound's ``item_search_img`` does)
needs no change of the spider: the spider uploads a local image before searching it.
"""

from __future__ import annotations

from pipeline.gateways.top.gateway import TopGateway


class UploadingTopGateway(TopGateway):
    name = "top-uploading"
    uploads_local_images = True
