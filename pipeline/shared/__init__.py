"""One run over many crawls ("workers") on Redis: a shared seed queue with leases, shared quotas, one commit.

``-s IMAGESEARCH_REDIS_URL=redis://host:port/db`` makes a crawl a worker of the run DATASET_RUN_ID.
Every worker is started with the same seeds; Redis holds what they share, under
``imagesearch:run:<run_id>:``:

- **the seed queue.** The first worker registers the run's searches (one per distinct image and
  category, plus one per seed rejected before any call) in the order given; a worker that
  registers different seeds is refused. A worker *leases* a search before it sends any call for
  it, and its heartbeat renews its leases every quarter of IMAGESEARCH_REDIS_LEASE_SECONDS; a
  worker that dies loses them when they expire, and the next worker to ask takes them. A search
  is *done* once its rows are durable in the worker's staging (a Parquet part file of its own,
  fsynced) and the worker says so: the first worker to say so owns it. So no search is made twice
  unless a lease expired, and identical images are searched once across every worker.
- **the quotas** (``RedisQuotaStore``): each app key's sliding window of booked slots and its
  ban, booked by one Lua script against Redis' clock, so every crawl of this Redis, of any run,
  shares each key's quota, and a ban one worker meets holds all of them.
- **the commit.** When every search is done, each worker asks to commit; the first gets the
  commit lease and builds the run from every worker's staged parts (for each seed, the rows of the
  worker that owns its search), the others exit 0 naming it. A worker that starts on a committed
  run exits 0 at once.

Every call is one round trip (EVALSHA): the scripts are loaded once. A Redis that cannot be reached
stops the worker, resumable (``SharedRunUnavailable``).
"""
