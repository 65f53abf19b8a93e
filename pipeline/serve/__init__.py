"""``scrapy serve``: search by photo over HTTP for apps and a web page, on the crawl's gateways, quota and cache.

pipeline.serve.spider runs the service as a spider that never closes (its calls need an open
engine); pipeline.serve.service searches; pipeline.serve.web is the HTTP side; pipeline.serve.cache
keeps answers.
"""
