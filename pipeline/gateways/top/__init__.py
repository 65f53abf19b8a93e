"""The TOP router (``taobao.image.search``): wire facts and signing shared with the sandbox, and the client."""
