"""Alibaba Cloud Image Search, Taobao-Union edition (``SearchByPic`` / ``SearchByUrl``, API 2021-05-01)."""
