"""The sandbox's product catalogue: the built-in generated one, or one loaded from a JSON-lines file."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import random
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pipeline.gateways.top.wire import ITEM_FIELDS as TOP_ITEM_FIELDS
from sandbox import offers

logger = logging.getLogger(__name__)

#: Image formats ``image_data`` may carry; anything else is "image format not supported".
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF"})
#: Decompression-bomb guard: images with more pixels than this are refused.  Decoding runs on the
#: reactor thread and only JPEG can be decoded at reduced scale (``draft``), so a PNG or lossless
#: WebP near this size costs a full decode; 16 MP still takes a ~12 MP phone photo (catalogue
#: images are 256 px) while 40 MP held every other request back for over a second.
MAX_PIXELS = 16_000_000

#: A product's listing fields: those of one ``taobao.image.search`` hit (the other protocols map them).
ITEM_FIELDS = TOP_ITEM_FIELDS

#: Placeholder substituted by the serving ``host:port`` when an item is rendered (see :func:`render_item`).
HOST_PLACEHOLDER = "{host}"

IMAGE_SIZE = 256
BUILTIN_SEED = 20240518

#: Real Taobao category ids, their names, how many products the built-in catalogue has in each,
#: and nouns for titles.  Sizes differ on purpose: some categories have fewer products than
#: the default ``max_results`` so ``total_results`` varies with ``cat``.
CATEGORIES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("16", "女装/女士精品", 420, ("连衣裙", "雪纺衫", "针织开衫", "半身裙", "风衣", "阔腿裤", "衬衫")),
    ("50015374", "运动服/休闲服装", 320, ("速干T恤", "运动套装", "跑步短裤", "瑜伽服", "连帽卫衣", "运动外套")),
    ("50010788", "彩妆/香水/美妆工具", 300, ("口红", "眼影盘", "粉底液", "腮红", "香水", "化妆刷套装")),
    ("1801", "美容护肤/美体/精油", 280, ("面霜", "精华液", "补水面膜", "洁面乳", "爽肤水", "防晒霜")),
    ("50012100", "流行男鞋/女鞋", 300, ("运动鞋", "帆布鞋", "马丁靴", "老爹鞋", "小白鞋", "凉拖鞋")),
    ("50008164", "家居饰品", 260, ("抱枕", "装饰画", "花瓶摆件", "香薰蜡烛", "地毯", "挂钟")),
    ("50013886", "户外/登山/野营/旅行用品", 220, ("帐篷", "登山杖", "冲锋衣", "睡袋", "折叠椅", "户外背包")),
    ("50008090", "3C数码配件", 200, ("数据线", "充电宝", "手机壳", "蓝牙耳机", "氮化镓充电器", "支架")),
    ("1512", "手机", 150, ("5G手机", "智能手机", "老人手机", "游戏手机", "折叠屏手机", "拍照手机")),
)

_ADJECTIVES = (
    "2024新款",
    "夏季",
    "秋冬",
    "ins风",
    "韩版",
    "高级感",
    "百搭",
    "加厚",
    "轻薄",
    "正品",
    "爆款",
    "网红同款",
)
_BRANDS = (
    "南极人",
    "优衣坊",
    "花西子",
    "李宁",
    "安踏",
    "小米",
    "华为",
    "骆驼",
    "三福",
    "完美日记",
    "北面",
    "绿联",
    "罗马仕",
    "无印良品",
)
_SUFFIXES = ("包邮", "官方旗舰", "现货速发", "送运费险", "顺丰", "买一送一", "限时折扣", "")
_SHOP_HEADS = ("小美", "阿里", "潮流", "时尚", "品质", "宜家", "优品", "星辰", "花花", "乐购", "大熊", "青柠")
_SHOP_TAILS = ("家的店", "小铺", "精品店", "生活馆", "严选", "工作室", "百货")

#: Sales in every form seen in the wild (api.md §2); ``{n}`` / ``{w}`` are filled per product.
_SALES_FORMS: tuple[str, ...] = (
    "int",
    "int",
    "{n}+",
    "{n}人付款",
    "{n}+人收货",
    "{w}万人付款",
    "{w}万+人付款",
    "{w}万+人付款",
    "{k}万+人付款",
    "{k}0万+",
    "月销 {w}万",
    "已售 {n}",
    "{n}",
)
#: Prices in every form seen in the wild (api.md §2 and a few gateway variants).
_PRICE_FORMS: tuple[str, ...] = (
    "str2",
    "str2",
    "float",
    "range",
    "",
    "yen",
    "yen_wide",
    "range_spaced",
    "str2",
)


@dataclass
class Product:
    """One listing: its API fields exactly as served, its category and where its image comes from."""

    fields: dict[str, Any]
    cat: str
    #: Drawing instructions of a built-in product (see :func:`render_spec`), or None.
    spec: dict[str, Any] | None = None
    #: Image file of a JSON-lines product, or None.
    image_path: Path | None = None
    #: True when ``fields["pic_url"]`` is the sandbox's own ``//{host}/img/<num_iid>.jpg``, whose
    #: ``{host}`` is filled in per request; any other value is served exactly as held.
    own_pic_url: bool = False
    #: Where the product was defined (``file:line`` of a JSON-lines catalogue), for error messages.
    source: str = ""

    @property
    def num_iid(self) -> str:
        return str(self.fields["num_iid"])

    @property
    def jpeg_quality(self) -> int:
        """The JPEG quality its picture is served at (a reseller's recompression, else 85)."""
        return int((self.spec or {}).get("variation", {}).get("recompress", 85))

    @property
    def offer(self) -> int | None:
        """The offer group a built-in product belongs to (sandbox/offers.py), or None."""
        return (self.spec or {}).get("offer")

    def image(self) -> Image.Image:
        """The product image as an RGB PIL image.  Raises CatalogError when its file cannot be decoded."""
        if self.spec is not None:
            return render_spec(self.spec)
        assert self.image_path is not None
        try:
            with Image.open(self.image_path) as img:
                return img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # load_jsonl only reads the header; a truncated or corrupt body shows up here, while the
            # index is built at startup, and must be the same one-line error as any other bad line.
            raise CatalogError(f"{self.source or self.image_path}: cannot decode image: {exc}") from None


@dataclass
class Catalog:
    """The products the sandbox serves, and a fingerprint of their definition (for the feature cache)."""

    products: list[Product]
    fingerprint: str
    description: str = "built-in"
    by_num_iid: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.by_num_iid = {}
        for index, product in enumerate(self.products):
            if product.num_iid in self.by_num_iid:
                raise CatalogError(f"duplicate num_iid {product.num_iid} in catalogue {self.description}")
            self.by_num_iid[product.num_iid] = index

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def get(self, num_iid: str) -> Product | None:
        index = self.by_num_iid.get(str(num_iid))
        return None if index is None else self.products[index]

    @property
    def cats(self) -> list[str]:
        return [p.cat for p in self.products]


class CatalogError(ValueError):
    """A catalogue file that cannot be served; the message is one line for the user."""


def render_item(product: Product, host: str) -> dict[str, Any]:
    """The product's API item.  Values are exactly as held, except the sandbox's own ``pic_url``
    (``//{host}/img/<num_iid>.jpg``), whose ``{host}`` becomes the serving ``host:port``, unknown when
    the catalogue is built: the one deviation from "served as held".  A ``{host}`` anywhere else
    (a title, a catalogue's own pic_url) is the catalogue's text and is left alone."""
    item: dict[str, Any] = {name: product.fields.get(name, "") for name in ITEM_FIELDS}
    if product.own_pic_url:
        item["pic_url"] = str(item["pic_url"]).replace(HOST_PLACEHOLDER, host)
    return item


# ---------------------------------------------------------------------------------------------
# Built-in catalogue
# ---------------------------------------------------------------------------------------------


def builtin_catalog(seed: int = BUILTIN_SEED) -> Catalog:
    """The deterministic built-in catalogue: 2,450 products over 9 categories, then the resellers and
    look-alikes of 120 of them (sandbox/offers.py)."""
    rng = random.Random(seed)
    products: list[Product] = []
    used_ids: set[int] = set()
    index = 0
    for cat, _name, count, nouns in CATEGORIES:
        for _ in range(count):
            num_iid = rng.randrange(520_000_000_000, 790_000_000_000)
            while num_iid in used_ids:
                num_iid = rng.randrange(520_000_000_000, 790_000_000_000)
            used_ids.add(num_iid)
            products.append(_builtin_product(rng, index, cat, nouns, num_iid))
            index += 1
    products += _offer_groups(products, random.Random(seed + 1), used_ids)
    definition = json.dumps([seed, [(c, n) for c, _, n, _ in CATEGORIES]], sort_keys=True)
    fingerprint = hashlib.sha256(definition.encode() + _source_fingerprint()).hexdigest()
    return Catalog(products, fingerprint, description="built-in")


#: Products of the demo seeds (sandbox/demo_seeds.py) that have resellers, so that the first crawl's report
#: shows offer groups; the other originals are drawn at random.
_DEMO_ORIGINALS = (3, 777, 1400, 2050)
_PRICE_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _offer_groups(products: list[Product], rng: random.Random, used_ids: set[int]) -> list[Product]:
    """The resellers and look-alikes of GROUPS originals among ``products`` (sandbox/offers.py), each
    original's spec marked with its group (``offer``), as its resellers' are."""
    nouns = {cat: nouns for cat, _name, _count, nouns in CATEGORIES}
    candidates = [index for index in range(len(products)) if index not in _DEMO_ORIGINALS]
    originals = list(_DEMO_ORIGINALS) + rng.sample(candidates, offers.GROUPS - len(_DEMO_ORIGINALS))
    added: list[Product] = []

    def new_id() -> int:
        num_iid = rng.randrange(520_000_000_000, 790_000_000_000)
        while num_iid in used_ids:
            num_iid = rng.randrange(520_000_000_000, 790_000_000_000)
        used_ids.add(num_iid)
        return num_iid

    for group, index in enumerate(originals):
        original = products[index]
        assert original.spec is not None
        original.spec["offer"] = group
        found = _PRICE_RE.search(str(original.fields["price"]).replace(",", ""))
        price = float(found.group()) if found else 50.0
        noun = rng.choice(nouns[original.cat])
        for _ in range(rng.randint(*offers.RESELLERS)):
            num_iid = new_id()
            spec = {**copy.deepcopy(original.spec), "variation": offers.variation(rng)}
            added.append(Product(offers.reseller_fields(original.fields, rng, num_iid, noun, price, HOST_PLACEHOLDER),
                                 original.cat, spec=spec, own_pic_url=True))
        for _ in range(offers.LOOK_ALIKES):
            num_iid = new_id()
            spec = offers.look_alike(original.spec, rng, _colour)
            added.append(Product(offers.reseller_fields(original.fields, rng, num_iid, rng.choice(nouns[original.cat]),
                                                        price * 0.8, HOST_PLACEHOLDER),
                                 original.cat, spec=spec, own_pic_url=True))
    return added


def _source_fingerprint() -> bytes:
    """Hash of this module's source, so that changing the generator invalidates cached features."""
    return hashlib.sha256(Path(__file__).read_bytes()).digest()


def _builtin_product(rng: random.Random, index: int, cat: str, nouns: Sequence[str], num_iid: int) -> Product:
    is_tmall = rng.random() < 0.35
    noun = rng.choice(nouns)
    title_noun = f"<span class=H>{noun}</span>" if rng.random() < 0.3 else noun
    brand = rng.choice(_BRANDS)
    if rng.random() < 0.12:
        brand = f"{brand}&amp;{rng.choice(_BRANDS)}"
    title = f"{brand}{rng.choice(_ADJECTIVES)}{title_noun}{rng.choice(_ADJECTIVES)} {rng.choice(_SUFFIXES)}".strip()
    if is_tmall:
        seller = f"{rng.choice(_BRANDS)}官方旗舰店"
        detail_host = "detail.tmall.com"
    else:
        seller = f"{rng.choice(_SHOP_HEADS)}{rng.choice(_SHOP_TAILS)}"
        detail_host = "item.taobao.com"
    scheme = "http:" if rng.random() < 0.25 else ""
    fields: dict[str, Any] = {
        "title": title,
        "pic_url": f"//{HOST_PLACEHOLDER}/img/{num_iid}.jpg",
        "price": _price(rng, index),
        "sales": _sales(rng, index),
        "num_iid": num_iid if index % 3 == 0 else str(num_iid),
        "detail_url": f"{scheme}//{detail_host}/item.htm?id={num_iid}",
        "seller_nick": seller,
        "is_tmall": is_tmall if index % 7 == 0 else ("true" if is_tmall else "false"),
    }
    return Product(fields=fields, cat=cat, spec=_random_spec(rng), own_pic_url=True)


def _sales(rng: random.Random, index: int) -> Any:
    form = _SALES_FORMS[index % len(_SALES_FORMS)]
    if form == "int":
        return rng.choice((7, 777, rng.randrange(0, 5000)))
    n = rng.choice((100, 200, 338, 1000, rng.randrange(1, 9999)))
    w = f"{rng.randrange(10, 99) / 10:.1f}"
    k = rng.randrange(1, 9)
    return form.format(n=n, w=w, k=k)


def _price(rng: random.Random, index: int) -> Any:
    form = _PRICE_FORMS[index % len(_PRICE_FORMS)]
    value = round(rng.uniform(5, 3000) * 100) / 100
    if form == "str2":
        return f"{value:.2f}"
    if form == "float":
        return value
    if form == "range":
        low = rng.randrange(10, 500)
        return f"{low}-{low + rng.randrange(10, 900)}"
    if form == "range_spaced":
        low = rng.randrange(10, 500)
        return f"{low} - {low + rng.randrange(10, 900)}"
    if form == "yen":
        return f"¥{value:.2f}"
    if form == "yen_wide":
        return f"￥ {value + 1000:,.2f}"
    return ""


_SHAPES = ("ellipse", "rectangle", "rounded", "triangle", "star", "ring", "bar")
_BACKGROUNDS = ("solid", "vgradient", "hgradient", "stripes", "checker", "dots", "diagonal")


def _colour(rng: random.Random, light: bool | None = None) -> tuple[int, int, int]:
    h = rng.random()
    s = rng.uniform(0.35, 1.0)
    if light is None:
        v = rng.uniform(0.25, 1.0)
    else:
        v = rng.uniform(0.8, 1.0) if light else rng.uniform(0.15, 0.5)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]
    return int(r * 255), int(g * 255), int(b * 255)


def _random_spec(rng: random.Random) -> dict[str, Any]:
    background = {
        "kind": rng.choice(_BACKGROUNDS),
        "a": _colour(rng),
        "b": _colour(rng),
        "period": rng.randrange(12, 64),
    }
    shapes = []
    for _ in range(rng.randrange(2, 5)):
        size = rng.randrange(40, 150)
        x, y = rng.randrange(0, IMAGE_SIZE - size // 2), rng.randrange(0, IMAGE_SIZE - size // 2)
        shapes.append(
            {
                "kind": rng.choice(_SHAPES),
                "box": (
                    x - size // 4,
                    y - size // 4,
                    x - size // 4 + size,
                    y - size // 4 + int(size * rng.uniform(0.5, 1.5)),
                ),
                "colour": _colour(rng),
                "outline": _colour(rng) if rng.random() < 0.5 else None,
                "angle": rng.uniform(0, 2 * math.pi),
            }
        )
    return {"background": background, "shapes": shapes}


def _background(bg: dict[str, Any]) -> Image.Image:
    n = IMAGE_SIZE
    kind, period = bg["kind"], bg["period"]
    a = Image.new("RGB", (n, n), tuple(bg["a"]))
    if kind == "solid":
        return a
    b = Image.new("RGB", (n, n), tuple(bg["b"]))
    if kind == "vgradient":
        mask = Image.linear_gradient("L").resize((n, n))
    elif kind == "hgradient":
        mask = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((n, n))
    else:
        y = np.arange(n, dtype=np.int32)[:, None]
        x = np.arange(n, dtype=np.int32)[None, :]
        if kind == "stripes":
            on = ((y // (period // 2 + 4)) % 2) + 0 * x
        elif kind == "checker":
            on = ((y // period) + (x // period)) % 2
        elif kind == "dots":
            cy, cx = (y % period) - period // 2, (x % period) - period // 2
            on = (cy * cy + cx * cx) < (period // 4) ** 2
        else:  # diagonal stripes
            on = ((x + y) // (period // 2 + 4)) % 2
        mask = Image.fromarray((on.astype(np.uint8) * 255), "L")
    return Image.composite(b, a, mask)


def render_spec(spec: dict[str, Any]) -> Image.Image:
    """Draw a built-in product image (256x256 RGB, or a reseller's ``variation`` of it) from its spec;
    deterministic."""
    img = _draw(spec)
    return offers.apply_variation(img, spec["variation"])[0] if "variation" in spec else img


def _draw(spec: dict[str, Any]) -> Image.Image:
    img = _background(spec["background"])
    draw = ImageDraw.Draw(img)
    for shape in spec["shapes"]:
        x0, y0, x1, y1 = shape["box"]
        fill, outline = tuple(shape["colour"]), shape["outline"] and tuple(shape["outline"])
        kind = shape["kind"]
        if kind == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=4)
        elif kind == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline, width=4)
        elif kind == "rounded":
            draw.rounded_rectangle((x0, y0, x1, y1), radius=max(4, (x1 - x0) // 5), fill=fill, outline=outline, width=4)
        elif kind == "ring":
            draw.ellipse((x0, y0, x1, y1), outline=fill, width=max(6, (x1 - x0) // 6))
        elif kind == "bar":
            cy = (y0 + y1) // 2
            draw.rectangle((0, cy - 10, IMAGE_SIZE, cy + 10), fill=fill)
        else:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
            points = 3 if kind == "triangle" else 10
            vertices = []
            for i in range(points):
                angle = shape["angle"] + 2 * math.pi * i / points
                scale = 1.0 if kind == "triangle" or i % 2 == 0 else 0.45
                vertices.append((cx + rx * scale * math.cos(angle), cy + ry * scale * math.sin(angle)))
            draw.polygon(vertices, fill=fill, outline=outline)
    return img


def jpeg_bytes(img: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# JSON-lines catalogue
# ---------------------------------------------------------------------------------------------


#: Largest ``num_iid`` accepted: TOP ids are Java longs (real ones have 12 digits).
MAX_NUM_IID = 2**63 - 1


class _NonFinite(ValueError):
    """A JSON-lines value that is NaN or infinite (which ``json`` accepts and cannot write back as JSON)."""


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400 parses to inf
        raise _NonFinite(f"{text} is not a finite number")
    return value


def _check_num_iid(value: Any) -> str | None:
    """None when ``value`` is a positive integer id (a JSON number or a string of ASCII digits), else why not."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"num_iid must be a positive integer, got {type(value).__name__}"
    # Digits are checked before int(): str.isdigit() takes "٢", and int() refuses over 4300 digits.
    if isinstance(value, str) and not (
        0 < len(value) <= 19 and value.isascii() and value.isdigit() and value[0] != "0"
    ):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f"num_iid must be a positive integer (1 to 19 ASCII digits, no leading zero), got {shown!r}"
    if not 1 <= int(value) <= MAX_NUM_IID:
        return f"num_iid must be between 1 and {MAX_NUM_IID}, got {value}"
    return None


def _check_image_file(image_path: Path) -> str | None:
    """None when ``image_path`` is a file whose header is an accepted, reasonably sized image, else why not.
    Only the header is read: the pixels are decoded once, when the index is built."""
    if not image_path.is_file():
        return "is not a file"
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below decides; Pillow's warning would add a second stderr line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(image_path) as img:
                fmt, (width, height) = img.format, img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "is not an image in a supported format (JPEG, PNG, WebP, BMP, GIF)"
    if fmt not in ACCEPTED_FORMATS:
        return f"is in unsupported image format {fmt}"
    if width * height > MAX_PIXELS:
        return f"is too large ({width}x{height} pixels; at most {MAX_PIXELS})"
    return None


def load_jsonl(path: Path) -> Catalog:
    """Load ``path``: one product a line, the API item fields plus ``cat`` and ``image`` (a path
    relative to the file).  ``pic_url`` defaults to the sandbox's own ``//{host}/img/<num_iid>.jpg``.
    Raises :class:`CatalogError` with a one-line message on any problem: every line is checked
    here, so a bad catalogue is refused at startup rather than failing requests later."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalogue {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw + _source_fingerprint())
    products: list[Product] = []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        try:
            # NaN/Infinity would be served as the invalid JSON token NaN: refused while parsing.
            record = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{where}: not valid JSON ({exc.msg})") from None
        except _NonFinite as exc:
            raise CatalogError(f"{where}: not valid JSON ({exc})") from None
        except ValueError:  # an integer past int()'s 4300-digit limit
            raise CatalogError(f"{where}: a number has too many digits") from None
        if not isinstance(record, dict):
            raise CatalogError(f"{where}: expected a JSON object")
        for required in ("num_iid", "title", "cat", "image"):
            if record.get(required) in (None, ""):
                raise CatalogError(f"{where}: missing {required!r}")
        if (problem := _check_num_iid(record["num_iid"])) is not None:
            raise CatalogError(f"{where}: {problem}")
        image_path = (path.parent / str(record["image"])).resolve()
        try:
            stat = image_path.stat()
        except OSError:
            raise CatalogError(f"{where}: image file {record['image']!r} not found next to the catalogue") from None
        if (problem := _check_image_file(image_path)) is not None:
            raise CatalogError(f"{where}: image file {record['image']!r} {problem}")
        digest.update(f"{image_path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        fields = {name: record.get(name, "") for name in ITEM_FIELDS}
        own_pic_url = not fields["pic_url"]
        if own_pic_url:
            fields["pic_url"] = f"//{HOST_PLACEHOLDER}/img/{record['num_iid']}.jpg"
        products.append(
            Product(fields=fields, cat=str(record["cat"]), image_path=image_path, own_pic_url=own_pic_url, source=where)
        )
    if not products:
        raise CatalogError(f"catalogue {path} has no products")
    return Catalog(products, digest.hexdigest(), description=str(path))
