"""The crawl's Scrapy components, each enabled in pipeline/settings.py and built with ``from_crawler``.

- ``middlewares``: GatewayMiddleware (pacing, the error table, retries and bans of every gateway call);
- ``handlers``: GatewayDownloadHandler (signs each call as it leaves);
- ``journal``: the JOBDIR journal of answers (a downloader middleware and the scheduler);
- ``pipelines``: ValidatePipeline and NormalizePipeline (the item pipelines);
- ``extensions``: SecretRedaction, EmbeddedSandbox;
- ``datasetrun``: DatasetAddon and DatasetRun, the run's locks, staging and commit (pipeline.runs);
- ``feedmanifest``: the manifest beside -o/-O feeds;
- ``checks``: every setting checked before the first call.

They may use pipeline.runs, pipeline.shared, pipeline.gateways and pipeline.pacing, never the layers
above them (pipeline.monitor, the spiders, the service, the commands): see docs/architecture.md.
"""
