"""Spiders of the image-search pipeline (SPIDER_MODULES)."""
