"""The tables: column names, Arrow types and one-line docs; CSV headers, Parquet schemas and docs derive from here."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

#: Prices are decimal yuan with fen precision.
PRICE_TYPE = pa.decimal128(14, 2)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    name: str
    type: pa.DataType
    doc: str
    nullable: bool = True
    #: Few distinct values (ids of the run or seed, shop names, price strings, page numbers):
    #: Parquet stores it dictionary-encoded. Others (titles, URLs, ids) are stored plain: building a
    #: dictionary for nearly unique values cost more than half of writing a products row, for a larger file.
    repeats: bool = False
    #: An id written in digits (num_iid, cat): the excel CSV dialect writes it as text Excel keeps exact.
    identifier: bool = False

    @property
    def arrow_field(self) -> pa.Field[pa.DataType]:
        return pa.field(self.name, self.type, nullable=self.nullable, metadata={"doc": self.doc})


@dataclass(frozen=True)
class Table:
    """A dataset table: its name, what one row is, and its ordered columns."""

    name: str
    doc: str
    columns: tuple[Column, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field for c in self.columns], metadata={"table": self.name, "doc": self.doc})

    @property
    def dictionary_columns(self) -> list[str]:
        """The columns Parquet stores dictionary-encoded (``Column.repeats``)."""
        return [c.name for c in self.columns if c.repeats]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


#: The columns of a listing, as products rows and hits hold them.
_NUM_IID = Column("num_iid", pa.int64(), "Taobao/Tmall item id.", nullable=False, identifier=True)
_LISTING: tuple[Column, ...] = (
    Column("title", pa.string(), "Listing title, HTML highlight tags and entities removed."),
    Column("pic_url", pa.string(), "Main picture URL, absolute https."),
    Column("detail_url", pa.string(), "Item page URL, absolute https."),
    Column("seller_nick", pa.string(), "Seller's shop nickname.", repeats=True),
    Column("is_tmall", pa.bool_(), "True for a Tmall shop, false for Taobao."),
    Column(
        "price_min", PRICE_TYPE,
        "Lowest price in yuan (a single price gives min = max; '39.9起' gives 39.90); null if unparseable "
        "or finer than a fen.",
    ),
    Column("price_max", PRICE_TYPE, "Highest price in yuan; null if unparseable or open ('39.9起')."),
    Column("price_raw", pa.string(), "Price exactly as the API returned it.", repeats=True),
    Column(
        "coupon_price", PRICE_TYPE,
        "Price after a coupon in yuan: the price the API returned when it is one ('券后 29.9'), or the gateway's "
        "own price after coupon when a coupon lowers the price (aliyun's PriceAfterCoupon); null otherwise.",
    ),
    Column(
        "promotion_price", PRICE_TYPE,
        "Promotional price in yuan, where the gateway gives one (onebound does); null otherwise (top, aliyun).",
    ),
    Column(
        "sales",
        pa.int64(),
        "Sales as a number (万 x10,000, '+' read as the lower bound), of what sales_kind says; null if "
        "unparseable.",
    ),
    Column(
        "sales_kind", pa.string(),
        "What sales counts, from the API's words: monthly (月销), paid (人付款), received (人收货), "
        "total (已售, 累计) or unknown (a bare number); aliyun's Volume is monthly (its last 30 days); null when "
        "no sales were given.",
        repeats=True,
    ),
    Column("sales_raw", pa.string(), "Sales exactly as the API returned it.", repeats=True),
    Column(
        "pic_hash", pa.string(),
        "Perceptual hash of the main picture: imagehash's pHash (64 bits, 16 hex digits; "
        "imagehash.hex_to_hash reads it) of its centre, the outer tenth of each side left out; near-duplicate "
        "pictures differ in few bits. Null when the picture could not be fetched or IMAGESEARCH_PICTURES is off.",
    ),
    Column(
        "pic_colour", pa.string(),
        "The main picture's centre in colours: the mean of each cell of a 4x4 grid, rrggbb hex, row by row "
        "(96 digits); what the offer grouping checks beside pic_hash. Null as pic_hash.",
    ),
)
#: A product's offer group: the listings of one product by several sellers.
OFFER_ID = Column(
    "offer_id", pa.string(),
    "The offer group: listings whose pictures are near-duplicates (pic_hash and pic_colour), the same product "
    "sold by several sellers (see the offers table); a listing alike with none is an offer of its own. Stable "
    "across runs: a group keeps the id of the earlier run's group most of its listings were in.",
)
_RUN_ID = Column("run_id", pa.string(), "The crawl run that produced this row.", nullable=False, repeats=True)
#: The time every row of a run has: what a time series over runs is ordered by (custom run ids need not sort).
RUN_STARTED_AT = Column(
    "run_started_at", TIMESTAMP_TYPE,
    "When the run started (UTC; a resumed run keeps its first start): order runs by it.", repeats=True,
)
_CRAWLED_AT = Column(
    "crawled_at", TIMESTAMP_TYPE, "When the result page holding this product was received (UTC).", repeats=True
)
_SEED_ID = Column("seed_id", pa.string(), "Stable id of the seed image.", nullable=False, repeats=True)
#: The order a seed was given in: the first seed given wins a product's row.
SEED_RANK = Column("seed_rank", pa.int32(), "0-based place of the seed in the order the seeds were given.",
                   repeats=True)
#: Which photo of its seed a row is of: a seed may be several photos of one product (its views).
VIEW = Column("view", pa.int32(), "Which photo of the seed (1-based): a seed given as several photos of one "
              "product has a search for each (its views); 1 for a seed of one photo.", repeats=True)
_MATCH: tuple[Column, ...] = (
    VIEW,
    Column("page", pa.int32(), "Result page the hit was on (1-based).", repeats=True),
    Column("position", pa.int32(), "1-based rank over all pages of the seed's search.", repeats=True),
    Column("cat", pa.string(), "Category id the search was restricted to; null for none.", repeats=True,
           identifier=True),
    Column("score", pa.float64(),
           "How similar the gateway found the product to the seed (aliyun's RankScore, higher is closer); null "
           "where the gateway gives none (top, onebound)."),
)

PRODUCTS = Table(
    "products",
    "One row per product (num_iid) per run: the listing as the first seed given found it (then its best "
    "position), normalised.",
    (
        _NUM_IID,
        *_LISTING,
        Column("first_seed_id", pa.string(), "The seed whose search found this product first.", repeats=True),
        OFFER_ID,
        _RUN_ID,
        RUN_STARTED_AT,
        _CRAWLED_AT,
    ),
)

MATCHES = Table(
    "matches",
    "One row per seed -> product hit, every pair kept.",
    (
        _RUN_ID,
        RUN_STARTED_AT,
        _SEED_ID,
        Column("num_iid", pa.int64(), "The product the seed's search returned.", nullable=False, identifier=True),
        *_MATCH,
        Column(
            "fused_rank", pa.int32(),
            "The product's rank for the seed over all its views, by reciprocal rank fusion (the sum over the "
            "views of 1 / (60 + its best position in the view); Cormack, Clarke & Buttcher, SIGIR 2009); for a "
            "seed of one photo, the order of its positions.",
            repeats=True,
        ),
        OFFER_ID,
    ),
)

SEEDS = Table(
    "seeds",
    "One row per seed photo the user gave, searched or not, with why not: a seed of several photos (views) "
    "has a row for each, and is found when any of them is.",
    (
        _RUN_ID,
        RUN_STARTED_AT,
        Column(
            "seed_id",
            pa.string(),
            "Stable id of the seed (manifest's own, else derived from path/URL).",
            nullable=False,
        ),
        VIEW,
        Column("source", pa.string(), "The path or URL the seed came from."),
        Column("sha256", pa.string(), "SHA-256 of the seed's image bytes as read; null if unreadable."),
        Column(
            "status",
            pa.string(),
            "ok, rejected (refused before any call), failed (gateway refused or calls kept failing) or "
            "unfinished (the crawl stopped before the seed's search ended; error_code says why).",
            repeats=True,
        ),
        Column("error_code", pa.string(), "Gateway error code or local reason code; null when ok.", repeats=True),
        Column("error_msg", pa.string(), "Human-readable reason; null when ok.", repeats=True),
        Column("total_results", pa.int64(), "total_results reported by the gateway."),
        Column("pages_fetched", pa.int32(), "Result pages fetched for this seed."),
        Column("items_found", pa.int64(), "Hits returned for this seed over all pages."),
        Column(
            "region", pa.string(),
            "The box of the photo searched, left,top,right,bottom in pixels of the original photo (EXIF "
            "orientation applied); null when the whole photo was searched.",
        ),
        Column(
            "region_source", pa.string(),
            "Where region came from: given (the manifest's region), auto (IMAGESEARCH_CROP=auto found the "
            "subject), service (the gateway cut out the product it detected: aliyun's Crop=true) or none "
            "(the whole photo); null for a seed whose photo was never read.",
            repeats=True,
        ),
        Column(
            "main_region", pa.string(),
            "The box the gateway detected the product in (aliyun's PicInfo.MainRegion), left,top,right,bottom "
            "in pixels of the original photo; null where the gateway says none (top, onebound).",
        ),
    ),
)

HITS = Table(
    "hits",
    "One row per search hit: the match and its listing, normalised. A run stages these and builds "
    "products and matches from them when it commits; -o/-O feeds write them as they come.",
    (_RUN_ID, RUN_STARTED_AT, _SEED_ID, SEED_RANK, _NUM_IID, *_MATCH, *_LISTING, _CRAWLED_AT),
)

_COUNT = pa.int64()
OFFERS = Table(
    "offers",
    "One row per offer group per run: a product as several sellers list it (their pictures near-duplicates), "
    "with its price spread over the listings (each listing's price_min) and its cheapest listing.",
    (
        Column("offer_id", pa.string(), "The group (products.offer_id, matches.offer_id).", nullable=False),
        _RUN_ID,
        RUN_STARTED_AT,
        Column("seed_ids", pa.string(), "The seeds whose searches found a listing of the group, in the order "
               "the seeds were given, separated by '; '."),
        Column("seeds", _COUNT, "How many seeds found a listing of the group."),
        Column("listings", _COUNT, "Listings (products) in the group."),
        Column("sellers", _COUNT, "Distinct sellers (seller_nick) of the listings."),
        Column("tmall_listings", _COUNT, "Listings of Tmall shops."),
        Column("priced_listings", _COUNT, "Listings with a price_min: what the prices below are over."),
        Column("price_min", PRICE_TYPE, "Lowest listing price in yuan."),
        Column("price_median", PRICE_TYPE, "Median listing price in yuan (of two middle prices, their mean)."),
        Column("price_max", PRICE_TYPE, "Highest listing price in yuan."),
        Column("cheapest_num_iid", pa.int64(), "The cheapest listing (then the smaller num_iid).", identifier=True),
        Column("cheapest_seller_nick", pa.string(), "The cheapest listing's seller."),
        Column("cheapest_detail_url", pa.string(), "The cheapest listing's item page."),
        Column("title", pa.string(), "The title of the group's listing the first seed given found first."),
        Column("pic_url", pa.string(), "That listing's picture."),
        Column("pic_hash", pa.string(), "That listing's pic_hash."),
    ),
)

RUNS = Table(
    "runs",
    "One row per committed run: when it ran, what answered, how its seeds fared, what it wrote.",
    (
        Column("run_id", pa.string(), "The run's id (the run_id of its rows in every table).", nullable=False),
        Column("started_at", TIMESTAMP_TYPE, "When the run started (UTC; a resumed run keeps its first start).",
               nullable=False),
        Column("finished_at", TIMESTAMP_TYPE, "When the run ended and was committed (UTC).", nullable=False),
        Column("complete", pa.bool_(), "True when every seed was searched to its end (finish_reason finished).",
               nullable=False),
        Column("finish_reason", pa.string(), "Why the crawl ended: finished, shutdown, quota_spent, ...",
               repeats=True),
        Column("gateway", pa.string(), "The API that answered: top, onebound or aliyun.", repeats=True),
        Column("endpoint_host", pa.string(), "Host of the endpoint called (never a URL: no credentials).",
               repeats=True),
        Column("seeds", _COUNT, "Seeds given (rows of the run's seeds table)."),
        Column("seeds_ok", _COUNT, "Seeds with status ok."),
        Column("seeds_rejected", _COUNT, "Seeds with status rejected."),
        Column("seeds_failed", _COUNT, "Seeds with status failed."),
        Column("seeds_unfinished", _COUNT, "Seeds with status unfinished."),
        Column("calls", _COUNT, "API calls the crawl that committed the run made (each one spends quota)."),
        Column("calls_replayed", _COUNT, "Answers of an earlier crawl of the run, replayed from JOBDIR, not "
               "asked again."),
        Column("products", _COUNT, "Rows of the run's products table."),
        Column("matches", _COUNT, "Rows of the run's matches table."),
        Column("offers", _COUNT, "Rows of the run's offers table."),
        Column("pictures_missing", _COUNT, "Listing pictures that could not be fetched or read (their listings "
               "have no pic_hash); null when IMAGESEARCH_PICTURES was off."),
        Column("checks_failed", _COUNT, "Data-quality checks the run failed (warn or fail; the manifest's checks "
               "say each figure and threshold); 0 when all passed."),
        Column("failed_checks", pa.string(), "The names of the failed checks, separated by '; '; null when none.",
               repeats=True),
    ),
)

#: What products_latest adds to a products row.
LATEST_COLUMNS: tuple[Column, ...] = (
    Column("first_seen_at", TIMESTAMP_TYPE, "When a finished run first saw the product (its crawled_at, UTC).",
           nullable=False),
    Column("last_seen_at", TIMESTAMP_TYPE, "When a finished run last saw the product (UTC).", nullable=False),
    Column("runs_seen", pa.int64(), "How many finished runs saw the product.", nullable=False),
)
PRODUCTS_LATEST = Table(
    "products_latest",
    "One row per product ever seen by a finished run: its latest observation (the products row of the "
    "latest run, by run_started_at, that saw it), with when it was first and last seen. Replaced at "
    "each commit; not partitioned.",
    (*PRODUCTS.columns, *LATEST_COLUMNS),
)

OFFERS_LATEST = Table(
    "offers_latest",
    "One row per offer group ever seen by a finished run: its latest observation (the offers row of the "
    "latest run, by run_started_at, that saw it), with when it was first and last seen. Replaced at each "
    "commit; not partitioned.",
    (
        *OFFERS.columns,
        Column("first_seen_at", TIMESTAMP_TYPE, "When a finished run first saw the group (its run_started_at, UTC).",
               nullable=False),
        Column("last_seen_at", TIMESTAMP_TYPE, "When a finished run last saw the group (UTC).", nullable=False),
        Column("runs_seen", pa.int64(), "How many finished runs saw the group.", nullable=False),
    ),
)

#: The tables of a run's datasets, partitioned by dt: every run adds its files.
TABLES: dict[str, Table] = {t.name: t for t in (PRODUCTS, MATCHES, SEEDS, OFFERS, RUNS)}
#: The tables every commit replaces whole: one file a format, over all finished runs.
SNAPSHOTS: dict[str, Table] = {PRODUCTS_LATEST.name: PRODUCTS_LATEST, OFFERS_LATEST.name: OFFERS_LATEST}
#: The tables a feed of the user's own (-o/-O) can write: what the crawl yields, as it yields it.
FEED_TABLES: dict[str, Table] = {t.name: t for t in (HITS, MATCHES, SEEDS)}
#: The seeds as a run stages them: with their place in the order given, to sort the seeds table by.
STAGED_SEEDS = Table(SEEDS.name, SEEDS.doc, (*SEEDS.columns, SEED_RANK))
