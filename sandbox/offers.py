"""The built-in catalogue's offer groups: one product sold by several shops, and products that look like it.

On Taobao one product is listed by many shops under their own titles and prices, mostly with the same main
picture as each shop re-uploads it: resized, recompressed, with the shop's text watermark or border, cut a
little, its colours shifted. The built-in catalogue holds such groups (an *original* product and its
*resellers*), beside *look-alikes*: other products drawn like one of them (the same shapes, another colour or
one shape moved), which a grouping must keep apart. A listing's ``offer`` (in ``Product.spec``) names its
group; look-alikes and every other product are their own.

Some pictures are named as Taobao's CDN serves a size or format of a picture (``.jpg_400x400.jpg``,
``.jpg_.webp``): the sandbox serves those too (sandbox/server.py).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance

#: How a reseller's picture differs from the original's: each reseller takes one or two of these.
VARIATIONS = ("resize", "recompress", "watermark", "border", "crop", "colour")
#: Groups in the built-in catalogue, resellers a group (inclusive range), look-alikes a group.
GROUPS, RESELLERS, LOOK_ALIKES = 120, (1, 7), 1
#: CDN names of a picture: as uploaded, a size of it, a WebP of it (weights of each).
CDN_SUFFIXES = (("", 6), ("_400x400.jpg", 3), ("_.webp", 1))
_SHOP_WORDS = ("正品", "现货", "包邮", "特价", "清仓", "同款", "新款", "热卖", "厂家直销", "爆款")
#: A shop's mark on its pictures (Pillow's default font draws Latin letters).
_MARKS = ("SHOP", "HOT", "BEST", "NEW", "TOP", "SALE")
_SHOPS = ("小店", "优选", "百货", "精品店", "工厂店", "专营店", "折扣店", "生活馆")


def variation(rng: random.Random) -> dict[str, Any]:
    """One or two of VARIATIONS with their parameters, as a reseller's picture differs."""
    kinds = rng.sample(VARIATIONS, rng.choice((1, 1, 2)))
    out: dict[str, Any] = {}
    for kind in kinds:
        if kind == "resize":
            out[kind] = rng.choice((180, 200, 320, 400))
        elif kind == "recompress":
            out[kind] = rng.randrange(35, 70)
        elif kind == "watermark":
            out[kind] = {"text": f"{rng.choice(_MARKS)} {rng.randrange(10, 99)}", "corner": rng.randrange(4)}
        elif kind == "border":
            out[kind] = {"width": rng.randrange(4, 12), "colour": rng.choice(((255, 255, 255), (240, 30, 30),
                                                                           (20, 20, 20)))}
        elif kind == "crop":
            out[kind] = [round(rng.uniform(0.0, 0.03), 3) for _ in range(4)]
        else:
            out[kind] = {"brightness": round(rng.uniform(0.9, 1.1), 3), "saturation": round(rng.uniform(0.85, 1.15), 3)}
    return out


def apply_variation(img: Image.Image, change: dict[str, Any]) -> tuple[Image.Image, int]:
    """``img`` as the reseller re-uploaded it, and the JPEG quality it is served at."""
    width, height = img.size
    if crop := change.get("crop"):
        left, top, right, bottom = crop
        img = img.crop((round(width * left), round(height * top), round(width * (1 - right)),
                        round(height * (1 - bottom)))).resize((width, height), Image.Resampling.BICUBIC)
    if colour := change.get("colour"):
        img = ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(colour["brightness"])).enhance(
            colour["saturation"])
    if border := change.get("border"):
        framed = Image.new("RGB", (width, height), tuple(border["colour"]))
        inner = img.resize((width - 2 * border["width"], height - 2 * border["width"]), Image.Resampling.BICUBIC)
        framed.paste(inner, (border["width"], border["width"]))
        img = framed
    if mark := change.get("watermark"):
        img = img.copy()
        draw = ImageDraw.Draw(img)
        x = 8 if mark["corner"] in (0, 3) else width - 90
        y = 8 if mark["corner"] in (0, 1) else height - 24
        draw.rectangle((x - 2, y - 2, x + 84, y + 16), fill=(255, 255, 255))
        draw.text((x, y), mark["text"], fill=(200, 0, 0))
    if side := change.get("resize"):
        img = img.resize((side, side), Image.Resampling.BILINEAR)
    return img, int(change.get("recompress", 85))


def look_alike(spec: dict[str, Any], rng: random.Random, colour: Callable[[random.Random], tuple[int, int, int]]
               ) -> dict[str, Any]:
    """Another product drawn like ``spec``, as a similar product's photo looks: the same background and
    palette, two of its shapes recoloured and set elsewhere."""
    other = copy.deepcopy(spec)
    shapes = other["shapes"]
    for index in rng.sample(range(len(shapes)), min(2, len(shapes))):
        x0, y0, x1, y1 = shapes[index]["box"]
        dx, dy = rng.choice((-1, 1)) * rng.randrange(40, 80), rng.choice((-1, 1)) * rng.randrange(40, 80)
        shapes[index]["box"] = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        shapes[index]["colour"] = colour(rng)
    other.pop("offer", None)
    other.pop("variation", None)
    return other


def reseller_fields(fields: dict[str, Any], rng: random.Random, num_iid: int, noun: str, price: float,
                    host_placeholder: str) -> dict[str, Any]:
    """A reseller's listing of the product ``fields`` describe: its own id, shop, title, price and sales."""
    shop = f"{rng.choice(_SHOP_WORDS)}{rng.choice(_SHOPS)}{rng.randrange(10, 99)}"
    title = f"{rng.choice(_SHOP_WORDS)}{noun}{rng.choice(_SHOP_WORDS)} {rng.choice(_SHOP_WORDS)}"
    suffix = weighted(rng, CDN_SUFFIXES)
    is_tmall = rng.random() < 0.25
    return {
        "title": title,
        "pic_url": f"//{host_placeholder}/img/{num_iid}.jpg{suffix}",
        "price": f"{price * rng.uniform(0.6, 1.5):.2f}",
        "sales": str(rng.randrange(0, 3000)),
        "num_iid": str(num_iid),
        "detail_url": f"//{'detail.tmall.com' if is_tmall else 'item.taobao.com'}/item.htm?id={num_iid}",
        "seller_nick": (shop + "旗舰店") if is_tmall else shop,
        "is_tmall": "true" if is_tmall else "false",
    }


def weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([value for value, _ in choices], weights=[weight for _, weight in choices])[0]
