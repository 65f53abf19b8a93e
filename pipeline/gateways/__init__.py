"""Gateways: how one image-search API is spoken (building calls, reading answers), behind one seam."""

from __future__ import annotations

from pipeline.gateways.base import ApiCall, Gateway, SearchPage, load_gateway

__all__ = ["ApiCall", "Gateway", "SearchPage", "load_gateway"]
