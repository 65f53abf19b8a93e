"""Project commands (COMMANDS_MODULE): ``scrapy crawl`` with one-line errors and meaningful exit codes, and
``scrapy report`` (a run's visual report, again)."""
