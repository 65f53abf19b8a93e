"""Seeds: every SPEC kind, stable ids, manifests in UTF-8/BOM/GBK, and fail-fast on nothing usable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import ConfigurationError
from pipeline.seeds import resolve_seeds, resolve_spec, seed_id_for


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/photos with a.jpg, B.JPG, sub/c.png, notes.txt; the working directory is tmp_path."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "B.JPG", "sub/c.png", "notes.txt"):
        (root / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    return root


def test_directory_is_recursive_sorted_and_case_insensitive(photos: Path) -> None:
    seeds = resolve_spec("photos")
    assert [s.source for s in seeds] == ["photos/B.JPG", "photos/a.jpg", "photos/sub/c.png"]
    assert all(s.rejection is None and s.path is not None for s in seeds)


def test_same_file_same_id_whichever_spec_names_it(photos: Path) -> None:
    (photos / "list.csv").write_text("image\na.jpg\n", encoding="utf-8")
    ids = {
        resolve_spec("photos/a.jpg")[0].seed_id,
        next(s.seed_id for s in resolve_spec("photos") if s.source.endswith("a.jpg")),
        resolve_spec("photos/a*.jpg")[0].seed_id,
        resolve_spec("photos/list.csv")[0].seed_id,
        resolve_spec("./photos/../photos/a.jpg")[0].seed_id,
    }
    assert len(ids) == 1
    assert ids.pop().startswith("a-")


def test_seed_ids_are_stable_and_readable() -> None:
    assert seed_id_for("photos/商品 图片.jpg") == seed_id_for("photos/商品 图片.jpg")
    assert seed_id_for("photos/商品 图片.jpg").startswith("商品-图片-")
    assert seed_id_for("a/x.jpg") != seed_id_for("b/x.jpg")
    assert seed_id_for("https://img.alicdn.com/bao/shoe.jpg").startswith("shoe-")


def test_glob(photos: Path) -> None:
    assert [s.source for s in resolve_spec("photos/**/*.png")] == ["photos/sub/c.png"]


def test_url() -> None:
    (seed,) = resolve_spec("https://example.com/p/shoe.jpg?x=1", cat="123")
    assert seed.url == "https://example.com/p/shoe.jpg?x=1" and seed.path is None and seed.cat == "123"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_manifest_encodings_relative_paths_and_columns(photos: Path, encoding: str) -> None:
    text = "Image,seed_id,cat\nsub/c.png,鞋子,50015374\na.jpg,,\nhttps://example.com/x.jpg,,9\n,,\n"
    (photos / "m.csv").write_bytes(text.encode(encoding))
    seeds = resolve_spec("photos/m.csv", cat="1")
    assert [(s.seed_id, s.cat) for s in seeds][0] == ("鞋子", "50015374")
    assert seeds[0].path == Path("photos/sub/c.png") and seeds[0].rejection is None
    assert seeds[1].cat == "1" and seeds[1].seed_id == resolve_spec("photos/a.jpg")[0].seed_id
    assert seeds[2].url == "https://example.com/x.jpg" and seeds[2].cat == "9"
    assert len(seeds) == 3  # the blank line is skipped


def test_manifest_row_without_image_and_missing_file_are_rejected_rows(photos: Path) -> None:
    (photos / "m.csv").write_text("image,seed_id\n,s1\ngone.jpg,s2\na.jpg,s3\n", encoding="utf-8")
    seeds = resolve_seeds("photos/m.csv")
    assert [(s.seed_id, s.rejection and s.rejection[0]) for s in seeds] == [
        ("s1", "missing_image"), ("s2", "file_not_found"), ("s3", None)
    ]


def test_missing_spec_among_others_is_a_rejected_seed(photos: Path) -> None:
    seeds = resolve_seeds("photos/a.jpg,photos/nope.jpg,photos/zz*.jpg")
    assert [s.rejection[0] if s.rejection else None for s in seeds] == [None, "file_not_found", "no_match"]


def test_same_seed_twice_is_kept_once(photos: Path) -> None:
    assert len(resolve_seeds("photos/a.jpg,photos/a.jpg,photos")) == 3


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "no seeds given"),
        (" , ", "no seeds given"),
        ("nothing/here.jpg", "nothing to search"),
        ("photos/*.gif", "matches no file"),
        ("photos/sub/../nope", "no such file"),
    ],
)
def test_nothing_usable_fails_fast(photos: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_seeds(spec)


def test_manifest_without_image_column_fails_fast(photos: Path) -> None:
    (photos / "m.csv").write_text("path,cat\na.jpg,1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="no 'image' column"):
        resolve_seeds("photos/m.csv,photos/a.jpg")


def test_short_gbk_that_happens_to_be_valid_utf8_is_read_as_gbk(photos: Path) -> None:
    assert "鞋".encode("gbk").decode("utf-8") == "Ь"  # the trap
    (photos / "鞋.jpg").write_bytes(b"x")
    (photos / "m.csv").write_bytes("image\n鞋.jpg\n".encode("gbk"))
    (seed,) = resolve_seeds("photos/m.csv")
    assert seed.rejection is None and seed.source == "photos/鞋.jpg"


def test_undecodable_manifest_says_how_to_fix(photos: Path) -> None:
    (photos / "m.csv").write_bytes(b"image\n\xff\xfe\x80\x81\n")
    with pytest.raises(ConfigurationError, match="CSV UTF-8"):
        resolve_seeds("photos/m.csv")


def test_absolute_paths_work_too(photos: Path) -> None:
    (seed,) = resolve_seeds(os.fspath(photos / "a.jpg"))
    assert seed.path == photos / "a.jpg" and seed.rejection is None


def test_file_name_that_is_not_utf8_is_a_seed_with_a_readable_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Latin-1 bytes in a file name (an old archive unpacked on Linux): the crawl must not stop over it.
    monkeypatch.chdir(tmp_path)
    os.mkdir(b"old")
    with open(b"old/caf\xe9.jpg", "wb") as file:
        file.write(b"x")
    (seed,) = resolve_seeds("old")
    assert seed.source == "old/caf\\xe9.jpg" and seed.rejection is None
    assert seed.seed_id.startswith("caf-xe9-") and seed.seed_id == resolve_seeds("old")[0].seed_id
    seed.source.encode("utf-8")  # storable as it is


def test_glob_through_a_symlink_loop_gives_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop" / "sub").mkdir(parents=True)
    (tmp_path / "loop" / "sub" / "a.jpg").write_bytes(b"x")
    (tmp_path / "loop" / "sub" / "up").symlink_to("..")
    assert [s.source for s in resolve_seeds("loop/**/*.jpg")] == ["loop/sub/a.jpg"]


def test_broken_symlink_in_a_directory_is_a_rejected_seed(photos: Path) -> None:
    (photos / "gone.jpg").symlink_to(photos / "nowhere.jpg")
    rejected = [s for s in resolve_seeds("photos") if s.rejection]
    assert [(s.source, s.rejection[0]) for s in rejected] == [("photos/gone.jpg", "file_not_found")]


def test_manifest_rows_sharing_an_id_are_the_views_of_one_seed(photos: Path) -> None:
    (photos / "seeds.csv").write_text(
        "image,seed_id,cat\n"
        "a.jpg,X1,\n"
        "B.JPG,X1,\n"          # X1 again: its second photo (view 2)
        "sub/c.png,X1~2,\n"    # an id of its own
        "\n"
        "a.jpg,X1,50015374\n"   # X1's third view, searched in a category
        "a.jpg,,abc\n"          # not a category id
        ",X9,\n",               # on line 8 of the file (the blank line counts)
        encoding="utf-8",
    )
    seeds = resolve_seeds("photos/seeds.csv")
    assert [(s.seed_id, s.view, s.source, s.cat) for s in seeds if s.rejection is None] == [
        ("X1", 1, "photos/a.jpg", None), ("X1", 2, "photos/B.JPG", None), ("X1~2", 1, "photos/sub/c.png", None),
        ("X1", 3, "photos/a.jpg", "50015374"),
    ]
    rejected = {s.source: s.rejection[0] for s in seeds if s.rejection}
    assert rejected == {"photos/a.jpg": "bad_cat", "photos/seeds.csv#8": "missing_image"}


def test_an_id_two_specs_give_is_renamed_with_all_its_views(photos: Path) -> None:
    (photos / "one.csv").write_text("image,seed_id\na.jpg,P\nB.JPG,P\n", encoding="utf-8")
    (photos / "two.csv").write_text("image,seed_id\nsub/c.png,P\na.jpg,P\n", encoding="utf-8")
    seeds = resolve_seeds("photos/one.csv,photos/two.csv,photos/one.csv")  # the first again: nothing new
    assert [(s.seed_id, s.view, s.source) for s in seeds] == [
        ("P", 1, "photos/a.jpg"), ("P", 2, "photos/B.JPG"), ("P~2", 1, "photos/sub/c.png"), ("P~2", 2, "photos/a.jpg"),
    ]


def test_a_views_directory_is_one_seed_of_several_photos(photos: Path) -> None:
    shoe = photos / "shoe.views"
    shoe.mkdir()
    for name in ("side.jpg", "front.jpg"):
        (shoe / name).write_bytes((photos / "a.jpg").read_bytes())
    seeds = resolve_seeds("photos")
    views = [(s.view, s.source) for s in seeds if s.source.startswith("photos/shoe.views/")]
    assert views == [(1, "photos/shoe.views/front.jpg"), (2, "photos/shoe.views/side.jpg")]
    (shoe_id,) = {s.seed_id for s in seeds if s.source.startswith("photos/shoe.views/")}
    assert shoe_id.startswith("shoe-") and all(s.view == 1 for s in seeds if not s.source.startswith("photos/shoe."))
    # Given as a SPEC of its own, the directory is the same one seed, with the same id.
    alone = resolve_seeds("photos/shoe.views")
    assert [(s.seed_id, s.view) for s in alone] == [(shoe_id, 1), (shoe_id, 2)]


def test_manifest_that_csv_cannot_read_is_one_line(photos: Path) -> None:
    (photos / "big.csv").write_text("image\n" + '"' + "x" * 200_000 + '"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="manifest photos/big.csv is not a CSV file the crawl can read"):
        resolve_seeds("photos/big.csv")


def test_protocol_relative_url_is_a_url() -> None:
    (seed,) = resolve_seeds("//img.alicdn.com/bao/x.jpg")
    assert seed.url == "https://img.alicdn.com/bao/x.jpg" and seed.rejection is None


def test_a_seeds_id_does_not_depend_on_the_working_directory_or_how_its_path_was_typed(
    photos: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ids(spec: str) -> dict[str, str]:
        """``{path below photos/: seed id}`` of a SPEC's seeds."""
        seeds = resolve_spec(spec)
        return {Path(os.path.abspath(s.path or "")).relative_to(photos).as_posix(): s.seed_id for s in seeds}

    (photos / "list.csv").write_text("image\na.jpg\nsub/c.png\n", encoding="utf-8")
    relative = ids("photos")
    assert set(relative) == {"a.jpg", "B.JPG", "sub/c.png"}
    monkeypatch.chdir(photos / "sub")
    for spec in (os.fspath(photos), "..", "../../photos/", "../sub/.."):
        assert ids(spec) == relative, spec
    assert ids("../**/*.png") == {"sub/c.png": relative["sub/c.png"]}  # relative to the glob's root, ..
    assert ids("../a.jpg") == ids(os.fspath(photos / "a.jpg")) == {"a.jpg": relative["a.jpg"]}
    assert ids("../list.csv") == {"a.jpg": relative["a.jpg"], "sub/c.png": relative["sub/c.png"]}


def test_one_name_in_two_directories_is_two_seeds_and_one_file_typed_twice_is_one(
    photos: Path, tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"y")
    seeds = resolve_seeds(f"photos/a.jpg,{other / 'a.jpg'},{photos / 'a.jpg'}")
    assert [s.source for s in seeds] == ["photos/a.jpg", f"{(other / 'a.jpg').as_posix()}"]
    assert seeds[1].seed_id == seeds[0].seed_id + "~2"
