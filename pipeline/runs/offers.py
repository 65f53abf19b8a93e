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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.pictures import COLOUR_BYTES, MAX_COLOUR, MAX_DISTANCE, components, near

logger = logging.getLogger(__name__)

#: The staged assignment's name (``$offers`` in the tables' queries).
OFFERS_STAGED = "offers"
_FIELDS: list[pa.Field[Any]] = [pa.field("num_iid", pa.int64(), nullable=False),
                                 pa.field("offer_id", pa.string(), nullable=False)]
_SCHEMA = pa.schema(_FIELDS)
#: A group's id where it is not o<first>.
_NAME_FIELDS: list[pa.Field[Any]] = [pa.field("g", pa.int64()), pa.field("offer_id", pa.string())]
_NAMES = pa.schema(_NAME_FIELDS)


def previous_offers(latest: Path) -> dict[int, str]:
    """num_iid -> offer_id of products_latest at ``latest`` (empty when there is none, or it has no offers)."""
    table = _previous_table(latest)
    return {int(num_iid): str(offer) for num_iid, offer in zip(table.column("num_iid").to_pylist(),
                                                                table.column("offer_id").to_pylist(), strict=True)
            if num_iid is not None}


def _previous_table(latest: Path) -> pa.Table:
    """products_latest's (num_iid, offer_id) at ``latest``, the rows with both; empty when there is none."""
    try:
        if "offer_id" in pq.read_schema(latest).names:
            table = pq.read_table(latest, columns=["num_iid", "offer_id"])
            num_iid: pa.ChunkedArray[Any] = table.column("num_iid")
            offer: pa.ChunkedArray[Any] = table.column("offer_id")
            has_both = pc.and_(pc.is_valid(num_iid), pc.not_equal(offer, pa.scalar("")))  # null: dropped
            return table.filter(has_both).cast(_SCHEMA)
    except (OSError, pa.ArrowInvalid):
        pass
    return _SCHEMA.empty_table()


def stage_offers(con: Any, hits: str, target: Path, latest: Path, max_distance: int = MAX_DISTANCE,
                 max_colour: float = MAX_COLOUR) -> int:
    """Group the products of the staged ``hits`` (a DuckDB connection ``con``) and write their offer ids to
    ``target``; the number of groups. Arrays and DuckDB throughout: a run of a million hits holds its 750,000
    products' fingerprints as numpy arrays (tens of MB), and only the groups whose ids are disputed (two
    groups that had listings of one earlier offer, or a new id already taken) go through Python."""
    # Each product once, numbered in num_iid order: its hash's 64 bits and its colours' bytes (null where
    # missing or not one: such a listing is an offer of its own).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE offer_prints AS SELECT num_iid, row_number() OVER (ORDER BY num_iid) - 1 AS i, "
        "TRY_CAST('0x' || any_value(pic_hash) AS UBIGINT) AS h, any_value(pic_colour) AS c "
        "FROM read_parquet($hits) GROUP BY num_iid", {"hits": hits})
    prints = con.sql(
        "SELECT num_iid, h, CASE WHEN length(c) = $hex AND regexp_full_match(c, '[0-9a-fA-F]+') THEN unhex(c) END "
        "AS c FROM offer_prints ORDER BY i", params={"hex": 2 * COLOUR_BYTES}).to_arrow_table()
    # The pairs a seed found together whose hashes are close (DuckDB's bit_count of their XOR): the colours
    # and the groups are worked out of these alone.
    pairs = con.sql(
        "WITH s AS (SELECT DISTINCT h.seed_id, p.i, p.h FROM read_parquet($hits) h JOIN offer_prints p "
        "USING (num_iid) WHERE p.h IS NOT NULL) "
        "SELECT DISTINCT a.i AS a, b.i AS b FROM s a JOIN s b ON a.seed_id = b.seed_id AND a.i < b.i "
        "WHERE bit_count(xor(a.h, b.h)) <= $d", params={"hits": hits, "d": max_distance}).fetchnumpy()
    con.execute("DROP TABLE offer_prints")
    n = prints.num_rows
    num_iids = prints["num_iid"].to_numpy()
    bits = pc.fill_null(prints["h"], 0).to_numpy().astype(np.uint64)
    colours = prints["c"].combine_chunks().cast(pa.binary(COLOUR_BYTES))
    known = (pc.is_valid(prints["h"]).to_numpy(zero_copy_only=False)
             & colours.is_valid().to_numpy(zero_copy_only=False))
    grid = np.zeros((n, COLOUR_BYTES), np.uint8)
    if n and (buffer := colours.buffers()[1]) is not None:
        data = np.frombuffer(buffer, dtype=np.uint8)
        grid[:] = data[colours.offset * COLOUR_BYTES:(colours.offset + n) * COLOUR_BYTES].reshape(n, COLOUR_BYTES)
    a, b = near(bits, known, grid, pairs["a"], pairs["b"], max_distance, max_colour)
    roots = components(n, a, b)
    del grid, bits, known
    # The groups, in the order of their smallest num_iid (its index, as the products are in num_iid order).
    group_roots, member_group = np.unique(roots, return_inverse=True)
    groups = pa.table({"g": pa.array(np.arange(len(group_roots), dtype=np.int64)),
                       "first": pa.array(num_iids[group_roots], pa.int64()),
                       "size": pa.array(np.bincount(member_group, minlength=len(group_roots)), pa.int64())})
    members = pa.table({"num_iid": pa.array(num_iids, pa.int64()), "g": pa.array(member_group, pa.int64())})
    views = {"offer_groups": groups, "offer_members": members, "offer_previous": _previous_table(latest)}
    for name, view in views.items():
        con.register(name, view)
    try:
        con.register("offer_names", _names(con, groups))
        table = con.sql(
            "SELECT m.num_iid, coalesce(x.offer_id, 'o' || g.first) AS offer_id FROM offer_members m "
            "JOIN offer_groups g USING (g) LEFT JOIN offer_names x USING (g) ORDER BY m.num_iid").to_arrow_table()
    finally:
        for name in (*views, "offer_names"):
            con.unregister(name)
    pq.write_table(table.cast(_SCHEMA), target)
    logger.debug("%d products in %d offer groups", n, len(group_roots))
    return len(group_roots)


def _names(con: Any, groups: pa.Table) -> pa.Table:
    """(g, offer_id) of the groups (the view ``offer_groups``, their listings ``offer_members``) not named
    ``o<first>``: offer_ids' rules, the votes for the earlier ids (``offer_previous``) counted in DuckDB, and
    only the disputed groups in Python (a group whose every earlier id is its alone takes its best)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE offer_votes AS SELECT m.g, p.offer_id, count(*) AS n FROM offer_members m "
        "JOIN offer_previous p USING (num_iid) GROUP BY m.g, p.offer_id")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE offer_disputed AS SELECT DISTINCT v.g FROM offer_votes v JOIN "
        "(SELECT offer_id FROM offer_votes GROUP BY offer_id HAVING count(*) > 1) USING (offer_id)")
    # Every earlier id of these groups is voted for by that group alone: no other can take it (ties: the
    # smaller id, in code points as Python's sort: DuckDB compares VARCHAR by its UTF-8 bytes).
    alone = con.sql(
        "SELECT g, arg_min(offer_id, (-n, offer_id)) AS offer_id FROM offer_votes "
        "WHERE g NOT IN (SELECT g FROM offer_disputed) GROUP BY g").to_arrow_table()
    disputed = con.sql(
        "SELECT v.g, v.offer_id, v.n, g.size, g.first FROM offer_votes v JOIN offer_disputed USING (g) "
        "JOIN offer_groups g USING (g)").fetchall()
    con.execute("DROP TABLE offer_votes")
    con.execute("DROP TABLE offer_disputed")
    # A disputed group's earlier ids are all voted for by another group too, so no group of ``alone`` took one.
    votes: dict[int, Counter[str]] = {}
    order_key: dict[int, tuple[int, int]] = {}
    for g, offer, count, size, first in disputed:
        votes.setdefault(g, Counter())[offer] = count
        order_key[g] = (-size, first)
    picked = _pick_previous(sorted(votes, key=order_key.__getitem__), votes, set())
    names = pa.concat_tables([alone.cast(_NAMES), pa.table({"g": list(picked), "offer_id": list(picked.values())},
                                                             schema=_NAMES)])
    # A new group's o<first> taken by an earlier offer's id: the next free o<first>-2, -3...
    firsts = groups.column("first").to_numpy()
    unnamed = np.ones(len(firsts), dtype=bool)
    unnamed[names.column("g").to_numpy()] = False
    bases = pc.binary_join_element_wise("o", pc.cast(pa.array(firsts[unnamed]), pa.string()), "")
    clash = pc.is_in(bases, value_set=names.column("offer_id")).to_numpy(zero_copy_only=False)
    clashes = np.flatnonzero(unnamed)[clash]
    if len(clashes):
        taken = {str(offer) for offer in names.column("offer_id").to_pylist()}
        renamed = [_new_id(int(firsts[g]), taken) for g in clashes.tolist()]
        names = pa.concat_tables([names, pa.table({"g": clashes, "offer_id": renamed}, schema=_NAMES)])
    return names


def _pick_previous(order: list[Any], votes: dict[Any, Counter[str]], taken: set[str]) -> dict[Any, str]:
    """Each group of ``order`` in turn takes the earlier id most of its listings had (``votes``; ties: the
    smaller id) that no group before it took; ``taken`` grows with them. The groups that took one."""
    picked: dict[Any, str] = {}
    for key in order:
        for offer, _count in sorted(votes[key].items(), key=lambda kv: (-kv[1], kv[0])):
            if offer not in taken:
                picked[key] = offer
                taken.add(offer)
                break
    return picked


def _new_id(first: int, taken: set[str]) -> str:
    """``o<first>``, or with ``-2``, ``-3``... the first of them not in ``taken`` (which it joins)."""
    base = candidate = f"o{first}"
    suffix = 1
    while candidate in taken:
        suffix += 1
        candidate = f"{base}-{suffix}"
    taken.add(candidate)
    return candidate


def offer_ids(groups: list[list[int]], previous: dict[int, str]) -> list[str]:
    """Each group's id: the earlier id most of its listings had (ties: the smaller id), a larger group
    first; else ``o<its smallest num_iid>`` (with ``-2``, ``-3``... if that is taken). The rules stage_offers
    follows on arrays, here on lists."""
    order = sorted(range(len(groups)), key=lambda i: (-len(groups[i]), min(groups[i])))
    taken: set[str] = set()
    picked = _pick_previous(order, {i: Counter(previous[n] for n in groups[i] if n in previous) for i in order},
                            taken)
    ids = [picked.get(i, "") for i in range(len(groups))]
    for i in order:
        if not ids[i]:
            ids[i] = _new_id(min(groups[i]), taken)
    return ids
