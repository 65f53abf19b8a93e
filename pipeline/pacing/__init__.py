"""Pacing the gateway calls: the app keys a crawl calls with (``apps``: IMAGESEARCH_APP_KEY or a pool, their
secrets and quotas) and the quota each call waits its turn under (``quota``: the sliding windows, the bans,
the stores that hold them). It knows no gateway: a gateway's default quota and margin are handed in.
"""
