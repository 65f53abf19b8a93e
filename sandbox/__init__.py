"""An embedded, TOP-compatible ``taobao.image.search`` sandbox (catalogue, protocol, HTTP server)."""

from __future__ import annotations
