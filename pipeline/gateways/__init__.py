"""Gateways: how each image-search API is spoken, one package per vendor behind one seam (``base.Gateway``).

``top`` (the TOP router, the article's protocol), ``onebound`` (Onebound's item_search_img) and
``aliyun`` (Alibaba Cloud Image Search, Taobao-Union edition). A
vendor's ``wire`` module holds the facts its client and the embedded sandbox both rely on (paths,
method and field names, codes, signing); its ``gateway`` module is the client. Nothing here is
imported by the package itself, so the sandbox can read a ``wire`` module without loading Scrapy.
"""
