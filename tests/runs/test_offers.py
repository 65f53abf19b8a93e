"""A run's offer groups as the commit stages them (pipeline/runs/offers.py): DuckDB and arrays, the same groups and
ids as the rules on lists (pipeline.pictures.group over the pairs a seed found together, then offer_ids)."""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.pictures import components, group
from pipeline.runs.offers import offer_ids, previous_offers, stage_offers


def _staged_run(rnd: random.Random, tmp_path: Path) -> tuple[Path, Path, list[tuple[str, int, str | None, str | None]]]:
    """Staged hits of a few seeds over a few hundred products, many of them resellers' copies of 8 pictures
    (near hashes, the same or other colours), some without a fingerprint; and a products_latest of an
    earlier run whose offer ids the groups vote for, split and clash with (an o<num_iid> of another)."""
    num_iids = sorted(rnd.sample(range(1000, 5000), rnd.randint(1, 300)))
    pictures = [rnd.getrandbits(64) for _ in range(8)]
    prints: dict[int, tuple[str | None, str | None]] = {}
    for num_iid in num_iids:
        bits = pictures[rnd.randrange(8)] ^ ((1 << rnd.randrange(64)) if rnd.random() < 0.5 else 0)
        colour = bytes([rnd.choice([100, 102, 200])] * 48).hex()
        kind = rnd.random()
        prints[num_iid] = ((None, None) if kind < 0.1 else (f"{bits:016x}", None) if kind < 0.15
                           else ("", colour) if kind < 0.2 else (f"{bits:016x}", colour))
    hits = [(f"seed-{seed}", num_iid, *prints[num_iid]) for seed in range(rnd.randint(1, 30))
            for num_iid in rnd.sample(num_iids, min(len(num_iids), rnd.randint(1, 12)))]
    staged = tmp_path / "hits.parquet"
    pq.write_table(pa.table({"seed_id": [h[0] for h in hits], "num_iid": pa.array([h[1] for h in hits], pa.int64()),
                             "pic_hash": [h[2] for h in hits], "pic_colour": [h[3] for h in hits]}), staged)
    latest = tmp_path / "products_latest.parquet"
    if rnd.random() < 0.8:
        ids = [f"o{rnd.choice(num_iids)}" if rnd.random() < 0.7 else f"o{rnd.randrange(1000, 5000)}-2"
               for _ in range(rnd.randint(1, 20))]
        earlier = rnd.sample(num_iids, rnd.randint(0, len(num_iids)))
        pq.write_table(pa.table({"num_iid": pa.array(earlier, pa.int64()),
                                 "offer_id": pa.array([rnd.choice([*ids, None, ""]) for _ in earlier], pa.string())}),
                       latest)
    return staged, latest, hits


def _by_the_rules(hits: list[tuple[str, int, str | None, str | None]], latest: Path) -> dict[int, str]:
    """num_iid -> offer_id by the rules on lists."""
    products = sorted({h[1] for h in hits})
    index = {num_iid: i for i, num_iid in enumerate(products)}
    first_print = {}
    for _, num_iid, pic_hash, pic_colour in hits:
        first_print.setdefault(num_iid, (pic_hash, pic_colour))
    seeds: dict[str, set[int]] = {}
    for seed_id, num_iid, *_ in hits:
        seeds.setdefault(seed_id, set()).add(index[num_iid])
    together = sorted({pair for found in seeds.values() for pair in combinations(sorted(found), 2)})
    roots = group([first_print[n][0] for n in products], [first_print[n][1] for n in products], pairs=together)
    groups: dict[int, list[int]] = {}
    for i, root in enumerate(roots):
        groups.setdefault(root, []).append(products[i])
    ids = offer_ids(list(groups.values()), previous_offers(latest))
    return {num_iid: ids[g] for g, members in enumerate(groups.values()) for num_iid in members}


@pytest.mark.parametrize("seed", range(40))
def test_the_staged_offers_are_the_rules_groups_and_ids(seed: int, tmp_path: Path) -> None:
    staged, latest, hits = _staged_run(random.Random(seed), tmp_path)
    target = tmp_path / "offers.parquet"
    with duckdb.connect() as con:
        count = stage_offers(con, str(staged), target, latest)
        assert not con.sql("SELECT * FROM duckdb_tables() WHERE temporary").fetchall()  # nothing left behind
    table = pq.read_table(target)
    assert table.schema.field("offer_id").type == pa.string() and not table.schema.field("num_iid").nullable
    staged_ids = dict(zip(table.column("num_iid").to_pylist(), table.column("offer_id").to_pylist(), strict=True))
    expected = _by_the_rules(hits, latest)
    assert staged_ids == expected
    assert count == len(set(expected.values()))


def test_components_are_named_by_their_smallest_index_however_long_their_chains() -> None:
    rng = np.random.default_rng(5)
    n = 200_000  # one chain through 150,000 listings in a random order, and 500 pairs more
    order = rng.permutation(150_000)
    a = np.concatenate([order[:-1], rng.integers(0, n, 500)])
    b = np.concatenate([order[1:], rng.integers(0, n, 500)])
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        parent[max(rx, ry)] = min(rx, ry)
    assert components(n, a, b).tolist() == [root(i) for i in range(n)]
    assert components(3, np.array([], np.int64), np.array([], np.int64)).tolist() == [0, 1, 2]
