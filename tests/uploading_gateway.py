"""A second gateway for tests: TOP's wire format, but local images go through taobao.upload.img first.

It stands for gateways such as Onebound's ``item_search_img`` (api.md section 3) that search only
image references: the spider must upload a local image before searching it, with no change of its own.
"""

from __future__ import annotations

from pipeline.gateways.top import TopGateway


class UploadingTopGateway(TopGateway):
    name = "top-uploading"
    uploads_local_images = True
