"""The Scrapy project: settings, item pipelines, downloader middlewares and extensions."""
