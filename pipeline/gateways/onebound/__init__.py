"""Onebound's ``item_search_img``: wire facts shared with the sandbox, and the client."""
