"""A run's offer groups: each product's ``offer_id``, worked out at commit from the staged hits' pictures.

The grouping is pipeline/pictures.py's. An offer keeps its id from run to run: a group takes the id most
of its listings had in products_latest (the finished runs before it), the largest group first when a group
split; a group none of whose listings was seen before is named after its smallest num_iid (``o<num_iid>``).
The assignment is staged as ``offers.parquet`` (num_iid, offer_id), which the tables' queries join.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.pictures import MAX_COLOUR, MAX_DISTANCE, group

logger = logging.getLogger(__name__)

#: The staged assignment's name (``$offers`` in the tables' queries).
OFFERS_STAGED = "offers"
_FIELDS: list[pa.Field[Any]] = [pa.field("num_iid", pa.int64(), nullable=False),
                                 pa.field("offer_id", pa.string(), nullable=False)]
_SCHEMA = pa.schema(_FIELDS)


def previous_offers(latest: Path) -> dict[int, str]:
    """num_iid -> offer_id of products_latest at ``latest`` (empty when there is none, or it has no offers)."""
    try:
        if "offer_id" not in pq.read_schema(latest).names:
            return {}
        table = pq.read_table(latest, columns=["num_iid", "offer_id"])
    except (OSError, pa.ArrowInvalid):
        return {}
    return {int(num_iid): str(offer) for num_iid, offer in zip(table.column("num_iid").to_pylist(),
                                                                table.column("offer_id").to_pylist(), strict=True)
            if offer and num_iid is not None}


def stage_offers(con: object, hits: str, target: Path, latest: Path, max_distance: int = MAX_DISTANCE,
                 max_colour: float = MAX_COLOUR) -> int:
    """Group the products of the staged ``hits`` (a DuckDB connection ``con``) and write their offer ids to
    ``target``; the number of groups."""
    rows = con.sql(  # type: ignore[attr-defined]
        "SELECT num_iid, any_value(pic_hash), any_value(pic_colour) FROM read_parquet($hits) "
        "GROUP BY num_iid ORDER BY num_iid", params={"hits": hits},
    ).fetchall()
    num_iids = [row[0] for row in rows]
    # The pairs a seed found together whose hashes are close (DuckDB's bit_count of their XOR): the colours
    # and the groups are worked out of these alone.
    pairs = con.sql(  # type: ignore[attr-defined]
        "WITH p AS (SELECT num_iid, TRY_CAST('0x' || any_value(pic_hash) AS UBIGINT) AS h, "
        "row_number() OVER (ORDER BY num_iid) - 1 AS i FROM read_parquet($hits) WHERE pic_hash <> '' "
        "GROUP BY num_iid), "
        "s AS (SELECT DISTINCT h.seed_id, p.i, p.h FROM read_parquet($hits) h JOIN p USING (num_iid)) "
        "SELECT DISTINCT a.i, b.i FROM s a JOIN s b ON a.seed_id = b.seed_id AND a.i < b.i "
        "WHERE bit_count(xor(a.h, b.h)) <= $d", params={"hits": hits, "d": max_distance},
    ).fetchall()
    known = {num_iid: index for index, num_iid in enumerate(num_iids)}
    hashed = [row[0] for row in rows if row[1]]  # p's products, in p's order
    pairs = [(known[hashed[a]], known[hashed[b]]) for a, b in pairs]
    roots = group([row[1] for row in rows], [row[2] for row in rows], max_distance, max_colour, pairs)
    groups: dict[int, list[int]] = {}
    for index, root in enumerate(roots):
        groups.setdefault(root, []).append(num_iids[index])
    ids = offer_ids(list(groups.values()), previous_offers(latest))
    table = pa.table({"num_iid": [n for members in groups.values() for n in members],
                      "offer_id": [ids[i] for i, members in enumerate(groups.values()) for _ in members]},
                     schema=_SCHEMA)
    pq.write_table(table, target)
    logger.debug("%d products in %d offer groups", len(num_iids), len(groups))
    return len(groups)


def offer_ids(groups: list[list[int]], previous: dict[int, str]) -> list[str]:
    """Each group's id: the earlier id most of its listings had (ties: the smaller id), a larger group
    first; else ``o<its smallest num_iid>`` (with ``-2``, ``-3``... if that is taken)."""
    order = sorted(range(len(groups)), key=lambda i: (-len(groups[i]), min(groups[i])))
    ids: list[str] = [""] * len(groups)
    taken: set[str] = set()
    for i in order:
        votes = Counter(previous[n] for n in groups[i] if n in previous)
        for offer, _count in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):
            if offer not in taken:
                ids[i] = offer
                taken.add(offer)
                break
    for i in order:
        if not ids[i]:
            base = candidate = f"o{min(groups[i])}"
            suffix = 1
            while candidate in taken:
                suffix += 1
                candidate = f"{base}-{suffix}"
            ids[i] = candidate
            taken.add(candidate)
    return ids
