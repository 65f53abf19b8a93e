"""Smoke test: the sandbox subprocess answers a signed search over loopback HTTP."""

from __future__ import annotations


def test_signed_search_returns_the_product_first(sandbox, top_call, catalog_image_b64):
    from sandbox.catalog import builtin_catalog

    expected = builtin_catalog().products[7].num_iid
    answer = top_call(sandbox.endpoint, "taobao.image.search", image_data=catalog_image_b64(7))
    items = answer["image_search_response"]["items"]["item"]
    assert str(items[0]["num_iid"]) == expected
    assert len(items) == 20
    assert sandbox.stats()["calls"]["by_method"]["taobao.image.search"] >= 1
