"""Seeds: turn ``-a seeds=SPEC[,SPEC...]`` (files, directories, globs, CSV manifests, URLs) into Seed records.

Seed ids are stable across runs for the same seed, wherever the crawl runs from and however the
path was typed. A manifest's own ``seed_id`` column wins; otherwise the id is
``<readable stem>-<10 hex of SHA-1>`` of the seed's *key*:

- a URL: the URL as given (made absolute: ``//host/x`` is ``https://host/x``);
- a file below a directory SPEC: its path relative to that directory (``sub/a.jpg``);
- a file a glob matched: its path relative to the glob's root, the directory before the first
  wildcard (``photos/**/*.jpg``: relative to ``photos``);
- a file a manifest names: the path as the manifest writes it, relative to the manifest's directory;
- a file given on its own: its name.

Keys are normalised (``os.path.normpath``, forward slashes). So ``photos/a.jpg`` has the same id
whether it came from the SPEC ``photos``, ``photos/*.jpg``, ``photos/a.jpg``, ``/abs/photos`` or
a manifest in ``photos`` naming ``a.jpg``, from any working directory. What changes an id: renaming
or moving the file within its SPEC's root, or naming it through another root (``.`` instead of
``photos``: ``photos/a.jpg``). Two seeds with one id (``a.jpg`` in two directories given
together) keep it for the first and get ``~2``, ``~3``... for the others, in the order given.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import io
import itertools
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from pipeline.crop import Box, parse_box
from pipeline.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: File extensions a directory SPEC takes without looking inside (compared lower-case). Any other
#: file below the directory is taken if Pillow can open it (AVIF, HEIC with pillow-heif, no
#: extension at all...) and skipped otherwise, the skip logged and counted.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
)
#: Manifest encodings tried in order: UTF-8 (with or without BOM), then GB18030, a superset of the
#: GBK that Excel on Chinese Windows writes "CSV" files in.
MANIFEST_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "gb18030")
#: A directory whose name ends so holds several photos of one product: one seed, each photo a view of it.
VIEWS_SUFFIX = ".views"
_GLOB_CHARS = re.compile(r"[*?\[]")
_SLUG_DROP = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Seed:
    """One seed image the user gave: a local ``path`` or a ``url``, or a ``rejection`` found while resolving."""

    seed_id: str
    source: str
    path: Path | None = None
    url: str | None = None
    cat: str | None = None
    #: ``(reason, detail)`` when the seed is unusable before anything is read, e.g. ``file_not_found``.
    rejection: tuple[str, str] | None = None
    #: The box of the photo to search (a manifest's ``region``), else None: the whole photo.
    region: Box | None = None
    #: Which photo of its seed this is (1-based): the views of one product share their ``seed_id``.
    view: int = 1

    @property
    def key(self) -> str:
        """What tells this photo from the seed's other views, in the crawl's bookkeeping (``seed_key``)."""
        return seed_key(self.seed_id, self.view)


def seed_key(seed_id: str, view: int) -> str:
    """A seed photo's key: its seed id for its first view, the id and the view apart by a NUL for the others."""
    return seed_id if view == 1 else f"{seed_id}\0{view}"


def is_url(text: str) -> bool:
    """An http(s) URL, or a protocol-relative one (``//img.alicdn.com/...``, as listings carry them)
    unless a local path of that name exists (``//home/me/a.jpg`` is a path on POSIX)."""
    return text.lower().startswith(("http://", "https://")) or (text.startswith("//") and not os.path.exists(text))


def absolute_url(url: str) -> str:
    """``//host/x`` -> ``https://host/x`` (the platform's CDNs serve https); other URLs unchanged."""
    return f"https:{url}" if url.startswith("//") else url


def readable(text: str) -> str:
    """``text`` safe to print and to store as UTF-8: a file name's undecodable bytes become ``\\xe9``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def seed_id_for(key: str) -> str:
    """``<readable stem>-<10 hex>`` for a normalised path or a URL (see the module docstring)."""
    if is_url(key):
        parts = urlsplit(key)
        stem = PurePosixPath(unquote(parts.path)).stem or parts.hostname or "url"
    else:
        stem = PurePosixPath(key).stem or "seed"
    slug = _SLUG_DROP.sub("-", readable(stem)).strip("-").lower()[:40] or "seed"
    # surrogateescape: a file name that is not UTF-8 (Latin-1 bytes from an old archive) hashes by its bytes.
    return f"{slug}-{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def _path_key(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def _file_seed(path_as_given: str, cat: str | None, seed_id: str | None = None, key: str | None = None) -> Seed:
    """The seed of one file; ``key`` (its id's key, see the module docstring) defaults to its name."""
    source = readable(_path_key(path_as_given))
    key = _path_key(key) if key is not None else os.path.basename(_path_key(path_as_given))
    path = Path(path_as_given)
    rejection = _cat_rejection(cat)
    if rejection is None and not path.is_file():
        rejection = (
            ("not_a_file", f"not a regular file: {source}")
            if path.exists()
            else ("file_not_found", f"no such file: {source}")
        )
    return Seed(seed_id or seed_id_for(key), source, path=path, cat=cat, rejection=rejection)


def _url_seed(url: str, cat: str | None, seed_id: str | None = None) -> Seed:
    url = absolute_url(url)
    return Seed(seed_id or seed_id_for(url), url, url=url, cat=cat, rejection=_cat_rejection(cat))


def category_id(text: str | None) -> str | None:
    """A category id as the gateways take it (ASCII digits), or None when ``text`` is blank.

    Full-width digits (``５００１``, as Chinese input methods type them) become ASCII ones;
    anything else that is not digits is returned unchanged, for the caller to reject.
    """
    cat = unicodedata.normalize("NFKC", text or "").strip()
    return cat or None


def is_category_id(cat: str) -> bool:
    return cat.isascii() and cat.isdigit()


def _cat_rejection(cat: str | None) -> tuple[str, str] | None:
    """A manifest's ``cat`` must be a category id (digits); -a cat= is checked before the seeds are read."""
    if cat is None or is_category_id(cat):
        return None
    return ("bad_cat", f"cat {cat!r} is not a category id (digits, e.g. 50015374)")


def _opens_as_image(path: Path) -> bool:
    """Pillow recognises the file (its header only is read)."""
    from PIL import Image

    import pipeline.images  # noqa: F401  # registers the optional Pillow plugins (HEIC)

    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True  # an image, too large: its seed is rejected with that reason
    except (OSError, ValueError, SyntaxError):
        return False


def _images_below(directory: Path, skipped: list[Path]) -> list[Path]:
    """Image files below ``directory`` (recursive), sorted by their path relative to it; the rest into ``skipped``."""
    found = []
    for p in sorted(directory.rglob("*"), key=lambda p: p.relative_to(directory).as_posix()):
        if p.is_symlink() and not p.exists():
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(p)  # kept: the seed it names gets a file_not_found row rather than vanishing
            else:
                skipped.append(p)
        elif not p.is_file():
            continue
        elif p.suffix.lower() in IMAGE_EXTENSIONS or _opens_as_image(p):
            found.append(p)
        else:
            skipped.append(p)
    return found


def _directory_seeds(
    spec: str, cat: str | None, skipped: list[Path] | None = None, root: str | None = None
) -> list[Seed]:
    """The images below directory ``spec``, their ids keyed relative to ``root`` (default: ``spec``)."""
    not_images: list[Path] = []
    images = _images_below(Path(spec), not_images)
    if not_images:
        names = ", ".join(p.relative_to(spec).as_posix() for p in not_images[:5])
        more = f" and {len(not_images) - 5} more" if len(not_images) > 5 else ""
        logger.warning("%s: %d files skipped, not images Pillow can open: %s%s",
                       _path_key(spec), len(not_images), names, more)
        if skipped is not None:
            skipped.extend(not_images)
    if not images:
        key = _path_key(spec)
        return [
            Seed(
                seed_id_for(os.path.basename(key) or key),
                key,
                path=Path(spec),
                cat=cat,
                rejection=("no_match", f"no image files below {key} (none that Pillow can open)"),
            )
        ]
    base = root if root is not None else spec
    seeds: list[Seed] = []
    views: dict[str, int] = {}
    # A *.views directory given as the SPEC: all its images are the views of one seed.
    own = _path_key(os.path.basename(os.path.normpath(spec)))
    own_group = own if own.lower().endswith(VIEWS_SUFFIX) else None
    for image in images:
        key = os.path.relpath(image, base)
        seed = _file_seed(os.path.join(spec, image.relative_to(spec)), cat, key=key)
        group = _views_dir(key) or own_group
        if group is not None:  # several photos of one product: one seed, a view each
            views[group] = views.get(group, 0) + 1
            seed = dataclasses.replace(seed, seed_id=seed_id_for(group), view=views[group])
        seeds.append(seed)
    return seeds


def _views_dir(key: str) -> str | None:
    """The ``*.views`` directory (as a key: relative to its SPEC's root) that a file's key is below, if any."""
    parts = PurePosixPath(_path_key(key)).parts[:-1]
    for index, part in enumerate(parts):
        if part.lower().endswith(VIEWS_SUFFIX):
            return "/".join(parts[: index + 1])
    return None


def _glob_seeds(spec: str, cat: str | None, skipped: list[Path] | None = None) -> list[Seed]:
    seeds: list[Seed] = []
    # "**" follows symlinked directories, so a link back up the tree would give one file under
    # endless names: each real file is taken once, under the first name the glob gives it.
    seen: set[str] = set()
    root = _glob_root(spec)
    for match in sorted(glob.glob(spec, recursive=True)):
        real = os.path.realpath(match)
        if real in seen:
            continue
        seen.add(real)
        if os.path.isdir(match):
            seeds.extend(s for s in _directory_seeds(match, cat, skipped, root) if s.rejection is None)
        else:
            seeds.append(_file_seed(match, cat, key=os.path.relpath(match, root)))
    if not seeds:
        return [Seed(seed_id_for(spec), spec, cat=cat, rejection=("no_match", f"the pattern {spec} matches no file"))]
    return seeds


def _glob_root(pattern: str) -> str:
    """The directory a glob's matches are below: its path before the first part with a wildcard."""
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not _GLOB_CHARS.search(part), parts))
    if len(fixed) == len(parts):  # no wildcard at all (not called so): its directory
        fixed = fixed[:-1]
    return os.path.join(*fixed) if fixed else "."


def read_manifest_text(path: Path) -> str:
    """The manifest's text, decoded as UTF-8 (BOM tolerated) or else GB18030/GBK.

    Short GBK text is often valid UTF-8 by accident (鞋 is D0 AC in GBK, which is UTF-8 for Ь), so
    UTF-8 text without a BOM and without a single CJK character, that GB18030 reads as Chinese,
    is taken as GBK. (A UTF-8 manifest in, say, Cyrillic needs a BOM: save it as "CSV UTF-8".)
    """
    data = path.read_bytes()
    decoded: dict[str, str] = {}
    for encoding in MANIFEST_ENCODINGS:
        try:
            decoded[encoding] = data.decode(encoding)
        except UnicodeDecodeError:
            continue
    utf8, gbk = decoded.get("utf-8-sig"), decoded.get("gb18030")
    if utf8 is not None:
        if gbk is not None and not data.startswith(b"\xef\xbb\xbf") and not _has_cjk(utf8) and _has_cjk(gbk):
            return gbk
        return utf8
    if gbk is not None:
        return gbk
    raise ConfigurationError(
        f"manifest {path} is neither UTF-8 nor GBK/GB18030 text: save it as 'CSV UTF-8' and try again"
    )


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" for char in text)


def _manifest_seeds(spec: str, default_cat: str | None) -> list[Seed]:
    manifest = Path(spec)
    try:
        return _read_manifest(spec, manifest, default_cat)
    except csv.Error as exc:
        raise ConfigurationError(
            f"manifest {readable(_path_key(spec))} is not a CSV file the crawl can read: {exc}"
        ) from None


def _read_manifest(spec: str, manifest: Path, default_cat: str | None) -> list[Seed]:
    reader = csv.DictReader(io.StringIO(read_manifest_text(manifest), newline=""))
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    if "image" not in columns:
        raise ConfigurationError(
            f"manifest {_path_key(spec)} has no 'image' column (columns: {', '.join(columns) or 'none'}): "
            "add a header row with image[,seed_id,cat,region]"
        )
    base = os.path.dirname(spec)
    seeds: list[Seed] = []
    views: dict[str, int] = {}  # rows that share a seed_id are the views of one product, in their order
    for row in reader:
        line_number = reader.line_num  # the file's line: DictReader skips blank lines
        cells = {name: (row.get(column) or "").strip() for name, column in columns.items()}
        if not any(cells.values()):
            continue  # a blank line, as spreadsheets leave at the end
        seed = _manifest_row(spec, base, cells, line_number, default_cat)
        if cells.get("seed_id"):
            views[seed.seed_id] = views.get(seed.seed_id, 0) + 1
            seed = dataclasses.replace(seed, view=views[seed.seed_id])
        seeds.append(seed)
    return seeds


def _manifest_row(spec: str, base: str, cells: dict[str, str], line_number: int, default_cat: str | None) -> Seed:
    """The seed of one manifest row that is not blank."""
    image, own_id, cat = cells["image"], cells.get("seed_id") or None, category_id(cells.get("cat")) or default_cat
    if not image:
        key = f"{_path_key(spec)}#{line_number}"
        return Seed(own_id or seed_id_for(f"{os.path.basename(_path_key(spec))}#{line_number}"), key, cat=cat,
                    rejection=("missing_image", f"{key}: the image cell is empty"))
    if is_url(image):
        return _with_region(_url_seed(image, cat, own_id), cells.get("region", ""))
    return _with_region(_file_seed(os.path.join(base, image), cat, own_id, key=image), cells.get("region", ""))


def _with_region(seed: Seed, text: str) -> Seed:
    """``seed`` with the box its manifest row gives (``left,top,right,bottom``); a box that is not one
    rejects the seed (``bad_region``), before any call."""
    if not text:
        return seed
    try:
        region = parse_box(text)
    except ValueError as exc:
        return seed if seed.rejection is not None else dataclasses.replace(seed, rejection=("bad_region", str(exc)))
    return dataclasses.replace(seed, region=region)


def resolve_spec(spec: str, cat: str | None = None, skipped: list[Path] | None = None) -> list[Seed]:
    """The seeds of one SPEC: a URL, a glob, a ``.csv`` manifest, a directory or an image file.

    Files a directory holds that are not images go to ``skipped`` (and a warning), not to the seeds.
    """
    if is_url(spec):
        return [_url_seed(spec, cat)]
    if _GLOB_CHARS.search(spec) and not os.path.exists(spec):
        return _glob_seeds(spec, cat, skipped)
    if spec.lower().endswith(".csv") and os.path.isfile(spec):
        return _manifest_seeds(spec, cat)
    if os.path.isdir(spec):
        return _directory_seeds(spec, cat, skipped)
    return [_file_seed(spec, cat)]


def resolve_seeds(specs: str, cat: str | None = None, skipped: list[Path] | None = None) -> list[Seed]:
    """Every seed of a comma-separated SPEC list, in order; raises ConfigurationError if none is usable.

    A SPEC that is missing or matches nothing gives a rejected seed when other SPECs give usable
    ones; when nothing usable is left, the crawl must not start. Files of a directory SPEC that
    Pillow cannot open are not seeds: they go to ``skipped``.
    """
    parts = [part.strip() for part in (specs or "").split(",") if part.strip()]
    if not parts:
        raise ConfigurationError(
            "no seeds given: use -a seeds=PATH[,PATH...] (image files, directories, globs, .csv manifests or URLs)"
        )
    seeds = _unique([resolve_spec(part, cat, skipped) for part in parts])
    if all(seed.rejection is not None for seed in seeds):
        reasons = "; ".join(f"{seed.source}: {seed.rejection[1]}" for seed in seeds if seed.rejection)[:500]
        raise ConfigurationError(f"nothing to search in seeds={specs!r}: {reasons}")
    return seeds


def _identity(seed: Seed) -> str:
    """What a seed is: its file (however its path was typed), else its URL or source."""
    return os.path.realpath(seed.path) if seed.path is not None else seed.source


def _same(one: Seed, other: Seed) -> bool:
    """The same seed given twice: its file (or URL), category and region."""
    return (_identity(one), one.cat, one.region) == (_identity(other), other.cat, other.region)


def _unique(groups: list[list[Seed]]) -> list[Seed]:
    """The seeds of every SPEC (``groups``, in order), repeats of the same seed photo dropped (same id, view,
    file, category and region), and an id an earlier SPEC has for another seed given a ``~N`` suffix: the
    same one for all the views that share it in this SPEC.

    The suffix never takes an id that another seed has as given (a manifest may name ``X1`` and another
    ``X1~2``), so every seed keeps the id its user wrote when it can.
    """
    given = {seed.seed_id for group in groups for seed in group}
    result: list[Seed] = []
    taken: dict[tuple[str, int], Seed] = {}
    owner: dict[str, int] = {}
    for index, group in enumerate(groups):
        renamed: dict[str, str] = {}
        for seed in group:
            known = taken.get((seed.seed_id, seed.view))
            if known is not None and _same(known, seed):
                logger.info("seed %s (%s) given twice: searched once", seed.seed_id, seed.source)
                continue
            if known is not None or owner.get(seed.seed_id, index) != index:
                if seed.seed_id not in renamed:
                    number = 2
                    while f"{seed.seed_id}~{number}" in owner or f"{seed.seed_id}~{number}" in given:
                        number += 1
                    renamed[seed.seed_id] = f"{seed.seed_id}~{number}"
                    logger.warning("seed id %s names both %s and %s: the second becomes %s", seed.seed_id,
                                   known.source if known else "an earlier seed", seed.source,
                                   renamed[seed.seed_id])
                seed = dataclasses.replace(seed, seed_id=renamed[seed.seed_id])
            owner.setdefault(seed.seed_id, index)
            taken[(seed.seed_id, seed.view)] = seed
            result.append(seed)
    return result
