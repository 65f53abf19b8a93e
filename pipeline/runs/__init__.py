"""A dataset run, start to finish: identity, locks, staged rows, the tables built from them, the commit.

- ``identity``: the run id and dt partition (DATASET_RUN_ID, else the run JOBDIR remembers, else a new
  sortable id), what JOBDIR remembers, and the names of the run's files and directories;
- ``locks``: a run id, and a JOBDIR, are each held by one crawl at a time (``RunLocked``, exit 5);
- ``staging``: every hit and every seed outcome goes to Parquet files in
  ``DATASET_DIR/_staging/<run_id>/`` as the crawl scrapes them; a write that fails (a full disk)
  fails the run: exit 6, nothing committed, JOBDIR kept for the resume;
- ``tables``: products (one row per num_iid: the first seed in the order given wins, then the best
  position), matches, seeds and runs, built from the staged rows by DuckDB, out of core, in every
  DATASET_FORMATS format;
- ``latest``: products_latest, one row per product over every finished run;
- ``manifest``: what a commit wrote, and the summary a person reads;
- ``commit``: the tables built, then the commit record (every rename to make) written and fsynced,
  then only renames; a commit killed half-way is finished by the next crawl that starts in the same
  DATASET_DIR (``finish_interrupted_commits``; ``python -m pipeline.runs DATASET_DIR`` does it alone).

A crawl drives a run through pipeline.components.datasetrun (the DatasetRun extension); a shared run's
workers (pipeline.shared) use the same staging and commit. Nothing here imports a Scrapy component.
"""
