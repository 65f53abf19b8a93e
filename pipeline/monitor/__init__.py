"""What a person watches of a crawl: its progress while it runs (``progress``, an extension reading the
gateway middleware and the spider's workload) and the run's report once it is committed (``report``,
written from the committed datasets and manifest, on the ``run_committed`` signal or by ``scrapy report``).
"""
