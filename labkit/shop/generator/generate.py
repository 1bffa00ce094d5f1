"""The deterministic synthetic shop: every table's rows as COPY text, from (seed, scale).

Integer arithmetic throughout (times in epoch seconds, money in cents) so the output is
byte-identical on every machine. Parameters and word lists live in datasets/.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from labkit.shop.generator import words
from labkit.shop.generator.prng import Stream

DAY = 86_400
NUMERIC_POSTAL = {"US", "DE", "FR", "ES", "IT", "JP", "IN", "MX", "BR", "AU", "SE", "DK"}
NULL = r"\N"  # NULL in the COPY text format
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


@dataclass(frozen=True)
class TableData:
    """One table's rows, ready for ``COPY table (columns) FROM STDIN``."""

    table: str
    columns: tuple[str, ...]
    lines: list[str]

    def chunks(self, lines: int = 1 << 16) -> Iterator[bytes]:
        """The COPY text in pieces of ``lines`` rows (never the whole table as one more string)."""
        for start in range(0, len(self.lines), lines):
            yield ("\n".join(self.lines[start : start + lines]) + "\n").encode()


def epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC).timestamp())


def blocks(n: int, size: int = 1 << 16) -> Iterator[slice]:
    """Slices over ``n`` rows: big tables turn numpy columns into Python values a block at a time."""
    for start in range(0, n, size):
        yield slice(start, start + size)


def ts(seconds: np.ndarray) -> list[str]:
    """Epoch seconds → 'YYYY-MM-DD HH:MM:SS+00'."""
    out: list[str] = []
    for b in blocks(len(seconds)):
        text = np.datetime_as_string(seconds[b].astype("datetime64[s]"), unit="s").tolist()
        out += [t.replace("T", " ") + "+00" for t in text]
    return out


def ts_or_null(seconds: np.ndarray, present: np.ndarray) -> list[str]:
    return [t if keep else r"\N" for t, keep in zip(ts(seconds), present.tolist(), strict=True)]


def cents(values: np.ndarray) -> list[str]:
    return [f"{v // 100}.{v % 100:02d}" for v in values.tolist()]


def js(value: object) -> str:
    """A JSON document as a COPY text field (backslashes escaped)."""
    return _JSON.encode(value).replace("\\", "\\\\")


def pg_array(items: list[str]) -> str:
    return "{" + ",".join('"' + i + '"' if (" " in i or "," in i or "&" in i) else i for i in items) + "}"


def composite(fields: list[str]) -> str:
    return "(" + ",".join('"' + f.replace('"', '""') + '"' for f in fields) + ")"


class Shop:
    """Generates the shop at ``scale`` from ``seed``; tables come out in load order.

    ``boundaries``: also put one order and one audit entry exactly on each month's first
    midnight, where ``>=`` and ``>`` (or ``<`` and ``<=``) give different answers. The course
    data has none; a grading dataset uses them to catch off-by-one date bounds.
    """

    def __init__(self, seed: int | None = None, scale: float = 1.0, *, boundaries: bool = False) -> None:
        self.boundaries = boundaries
        self.p = words.params()
        self.seed = int(seed if seed is not None else self.p["seed"])
        self.scale = float(scale)
        self.start = epoch(self.p["start"])
        self.as_of = epoch(self.p["as_of"])
        self.users_since = epoch(self.p["users_since"])
        self.days = (self.as_of - self.start) // DAY
        self._day_weights = self._season()

    def rows(self, key: str, minimum: int = 10) -> int:
        return max(minimum, round(self.p["rows"][key] * self.scale))

    def stream(self, name: str) -> Stream:
        return Stream(self.seed, name)

    # -- time helpers -------------------------------------------------------------------
    def _season(self) -> np.ndarray:
        season = self.p["season"]
        day_starts = self.start + np.arange(self.days, dtype=np.int64) * DAY
        dates = day_starts.astype("datetime64[s]").astype("datetime64[D]")
        months = dates.astype("datetime64[M]").astype(np.int64) % 12
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        months_since = np.arange(self.days) // 30
        growth = 1000 + season["growth_per_mille_per_month"] * months_since
        weights = np.asarray(season["month"])[months] * np.asarray(season["weekday"])[weekday] * growth // 1000
        return np.cumsum(weights.astype(np.int64))

    def _seconds_in_days(self, s: Stream, day_index: np.ndarray) -> np.ndarray:
        hours = s.weighted(self.p["season"]["hour"], len(day_index))
        rest = s.integers(0, 3599, len(day_index))
        return self.start + day_index * DAY + hours * 3600 + rest

    def _day_of(self, seconds: np.ndarray) -> np.ndarray:
        return (seconds - self.start) // DAY

    def _on_boundaries(self, seconds: np.ndarray, earliest: np.ndarray | None = None) -> np.ndarray:
        """With ``boundaries``: per month, the first time on its first day moved to its midnight
        (if ``earliest`` allows). Otherwise ``seconds`` unchanged."""
        if not self.boundaries:
            return seconds
        moved = seconds.copy()
        months = np.arange(np.datetime64(self.p["start"], "M"), np.datetime64(self.p["as_of"], "M") + 1)
        for midnight in months.astype("datetime64[s]").astype(np.int64).tolist():
            on_day = (moved >= midnight) & (moved < midnight + DAY)
            if earliest is not None:
                on_day &= earliest <= midnight
            if on_day.any():
                moved[int(np.flatnonzero(on_day)[np.argmin(moved[on_day])])] = midnight
        return moved

    # -- tables ---------------------------------------------------------------------------
    def tables(self) -> Iterator[TableData]:
        yield self.categories()
        yield self.logs()  # the biggest and independent: its COPY overlaps generating the rest
        yield self.users()
        yield self.products()
        yield from self.orders_and_items()
        yield self.user_events()
        yield self.inventory()
        yield self.events()
        yield self.audit_log()

    def categories(self) -> TableData:
        self.category_list = words.categories()
        lines = []
        for c in self.category_list:
            slug = "-".join(c.path).lower().replace(" & ", "-").replace(" ", "-")
            parent = str(c.parent_id) if c.parent_id else r"\N"
            lines.append(f"{c.id}\t{parent}\t{c.name}\t{slug}")
        return TableData("categories", ("id", "parent_id", "name", "slug"), lines)

    def users(self) -> TableData:
        n = self.rows("users", 200)
        s = self.stream("users")
        up = self.p["users"]
        firsts, lasts = words.words("first_names.txt"), words.words("last_names.txt")
        cities = words.table("cities.txt")
        city_idx = s.weighted([int(c[4]) for c in cities], n)
        first = s.picks(firsts, n)
        last = s.picks(lasts, n)
        # sign-ups grow over time: weight of day d is 100 + d/10
        signup_days = (self.as_of - self.users_since) // DAY - 1
        signup_cum = np.cumsum(100 + np.arange(signup_days, dtype=np.int64) // 10)
        day = s.weighted(np.diff(np.concatenate([[0], signup_cum])), n)
        created = self.users_since + day * DAY + s.integers(0, DAY - 1, n)
        order = np.lexsort((np.arange(n), created))  # physical order: by sign-up time
        created = created[order]
        city_idx, first, last = city_idx[order], [first[i] for i in order], [last[i] for i in order]
        ids = s.uuids(n)
        deleted = s.per_mille(up["deleted_per_mille"], n)
        deleted_at = created + DAY + (s.u64(n) % np.maximum(1, self.as_of - created - 2 * DAY).astype(np.uint64)).astype(np.int64)
        deleted_at = np.where(deleted, deleted_at, 0)
        logged_in = ~s.per_mille(up["never_logged_in_per_mille"], n)
        end = np.where(deleted, deleted_at, self.as_of)
        last_login = created + (s.u64(n) % np.maximum(1, end - created).astype(np.uint64)).astype(np.int64)
        updated = np.maximum(last_login, np.where(deleted, deleted_at, created))
        role_draw = s.integers(0, 999, n)
        guest_below = up["admin_per_mille"] + up["guest_per_mille"]
        roles = np.where(role_draw < up["admin_per_mille"], "admin", np.where(role_draw < guest_below, "guest", "user"))
        interests = words.words("interests.txt")
        bios = words.words("bio_phrases.txt")
        flags = s.integers(0, 999, (n * 6)).reshape(n, 6)
        ages = s.integers(18, 79, n)
        picks = s.integers(0, len(interests) - 1, n * 4).reshape(n, 4)
        counts = s.integers(0, 4, n)
        domains = ["example.com", "example.org", "example.net", "mail.example"]
        dom = s.integers(0, len(domains) - 1, n)
        hashes = s.u64(n * 4).reshape(n, 4)
        self.user_ids, self.user_created, self.user_end = ids, created, end
        self.user_city = city_idx
        self.user_deleted = deleted
        lines = []
        for i in range(n):
            f, l_ = first[i], last[i]
            username = f"{f.lower()}.{l_.lower()}{i + 1}"
            email = f"{username}@{domains[dom[i]]}"
            city = cities[city_idx[i]]
            chosen = sorted({interests[j] for j in picks[i, : counts[i]].tolist()})
            profile: dict[str, object] = {"firstName": f, "lastName": l_}
            if flags[i, 0] < 700:
                profile["bio"] = bios[int(flags[i, 1]) % len(bios)]
            if flags[i, 2] < 800:
                profile["age"] = int(ages[i]) if flags[i, 3] >= 20 else 16 + int(flags[i, 3]) % 2
            if flags[i, 4] < 850:
                profile["verified"] = bool(flags[i, 5] < 650)
            if flags[i, 1] < 900:
                profile["address"] = {"city": city[0], "state": city[1], "country": city[2]}
            if chosen and flags[i, 3] < 750:
                profile["interests"] = chosen
            if flags[i, 5] >= 900:
                profile["preferences"] = {"newsletter": bool(flags[i, 0] % 2), "theme": ["light", "dark"][int(flags[i, 2]) % 2]}
            password = "$2b$12$" + "".join(f"{h:016x}" for h in hashes[i].tolist())[:53]
            tags = pg_array(chosen) if flags[i, 2] >= 100 else r"\N"
            lines.append("\t".join([
                ids[i], email, username, password, str(roles[i]), js(profile), tags,
                ts(created[i : i + 1])[0], ts(updated[i : i + 1])[0],
                ts(last_login[i : i + 1])[0] if logged_in[i] else r"\N",
                ts(deleted_at[i : i + 1])[0] if deleted[i] else r"\N",
            ]))  # fmt: skip
        columns = ("id", "email", "username", "password_hash", "role", "profile", "tags",
                   "created_at", "updated_at", "last_login_at", "deleted_at")  # fmt: skip
        return TableData("users", columns, lines)

    def products(self) -> TableData:
        n = self.rows("products", 100)
        s = self.stream("products")
        pp = self.p["products"]
        leaves = [c for c in self.category_list if c.is_leaf]
        leaf = s.integers(0, len(leaves) - 1, n)
        brands, adjectives = words.words("brands.txt"), words.words("product_adjectives.txt")
        colors, features, materials = words.words("colors.txt"), words.words("features.txt"), words.words("materials.txt")
        # launch week (10 %), the rest of the first quarter, then spread until the as-of date
        phase = s.integers(0, 999, n)
        q1_end = epoch("2024-04-01")
        created = np.where(
            phase < 100, self.start + s.integers(0, 7 * DAY - 1, n),
            np.where(phase < pp["first_quarter_per_mille"], self.start + s.integers(7 * DAY, q1_end - self.start - 1, n),
                     q1_end + s.integers(0, self.as_of - q1_end - DAY, n)),
        )  # fmt: skip
        order = np.lexsort((np.arange(n), created))
        created, leaf = created[order], leaf[order]
        ids = s.uuids(n)
        draw = s.integers(0, 999, n * 8).reshape(n, 8)
        self.product_ids, self.product_created = ids, created
        self.product_price = np.zeros(n, dtype=np.int64)
        self.product_meta: list[tuple[str, str]] = []
        self.product_leaf = leaf
        lines = []
        for i in range(n):
            c = leaves[leaf[i]]
            low, high = c.price_cents
            u = int(draw[i, 0])
            price = low + (high - low) * u * u // 1_000_000  # skewed towards the cheap end
            price = max(low, price - price % 100 + 99) if price > 1000 else max(99, price)
            self.product_price[i] = price
            brand = brands[int(draw[i, 1]) % len(brands)]
            noun = c.nouns[int(draw[i, 2]) % len(c.nouns)]
            name = f"{brand} {adjectives[int(draw[i, 3]) % len(adjectives)]} {noun}"
            sku = f"{''.join(w[0] for w in c.path).upper()}-{i + 1:06d}"
            self.product_meta.append((sku, name))
            feats = sorted({features[int(draw[i, 4] + k * 7) % len(features)] for k in range(int(draw[i, 5]) % 4)})
            if draw[i, 6] < pp["waterproof_per_mille"] and "waterproof" not in feats:
                feats = sorted([*feats, "waterproof"])
            attributes: dict[str, object] = {"brand": brand, "color": colors[int(draw[i, 7]) % len(colors)]}
            if feats:
                attributes["features"] = feats
            if draw[i, 5] < 600:
                attributes["material"] = materials[int(draw[i, 3]) % len(materials)]
            if draw[i, 4] < 500:
                attributes["weight_g"] = 50 + int(draw[i, 2]) * 7
            if c.path[0] == "Clothing":
                attributes["size"] = ["XS", "S", "M", "L", "XL"][int(draw[i, 6]) % 5]
            description = (
                r"\N" if draw[i, 7] < pp["no_description_per_mille"]
                else f"{name}: a {', '.join(feats) or 'dependable'} {noun.lower()} from {brand}, built for {c.path[-2].lower()}."
            )  # fmt: skip
            cost = price * (400 + int(draw[i, 1]) % 350) // 1000
            lines.append([
                ids[i], sku, name, description, js(attributes), cents(np.array([price]))[0], cents(np.array([cost]))[0],
                None, None, pg_array(list(c.path)), str(c.id), ts(created[i : i + 1])[0],
            ])  # fmt: skip
        self._product_rows = lines
        columns = ("id", "sku", "name", "description", "attributes", "price", "cost", "stock_quantity",
                   "reserved_quantity", "categories", "category_id", "created_at", "updated_at")  # fmt: skip
        # stock depends on open orders: filled in by orders_and_items(), emitted via _product_table
        self._product_columns = columns
        return TableData("products", columns, [])  # placeholder, replaced below

    def orders_and_items(self) -> Iterator[TableData]:
        s = self.stream("orders")
        op = self.p["orders"]
        n_users = len(self.user_ids)
        tiers = self.p["users"]["tiers"]
        tier = s.weighted([t["share"] for t in tiers], n_users)
        low = np.array([t["min_orders"] for t in tiers])[tier]
        high = np.array([t["max_orders"] for t in tiers])[tier]
        wanted = low + (s.u64(n_users) % (high - low + 1).astype(np.uint64)).astype(np.int64)
        first_day = np.maximum(self._day_of(self.user_created) + 1, 7)
        last_day = np.minimum(self._day_of(self.user_end) - 1, self.days - 1)
        active = np.maximum(0, last_day - first_day + 1)
        count = np.where(wanted > 0, np.maximum(1, wanted * active // self.days), 0)
        count = np.where(active > 0, count, 0)
        self.user_order_count = count
        owner = np.repeat(np.arange(n_users), count)
        n = len(owner)
        day = s.within(self._day_weights, first_day[owner], last_day[owner])
        created = self._seconds_in_days(s, day)
        created = np.maximum(created, self.user_created[owner] + 60)
        created = self._on_boundaries(created, earliest=self.user_created[owner] + 60)
        order = np.lexsort((np.arange(n), created))
        owner, created = owner[order], created[order]
        ids = s.uuids(n)
        # line items
        k = s.weighted(op["items_per_order_weights"], n) + 1
        item_order = np.repeat(np.arange(n), k)
        m = len(item_order)
        n_products = len(self.product_ids)
        rank = np.argsort(s.u64(n_products), kind="stable")
        popularity = np.zeros(n_products, dtype=np.int64)
        popularity[rank] = 1_000_000_000 // (np.arange(n_products) + op["popularity_offset"])
        candidates = s.weighted(popularity, m * 4).reshape(m, 4)
        available = self.product_created[candidates] < created[item_order][:, None]
        first_ok = np.argmax(available, axis=1)
        product = candidates[np.arange(m), first_ok]
        launch = np.flatnonzero(self.product_created < self.start + 7 * DAY)
        fallback = launch[s.integers(0, len(launch) - 1, m)]
        product = np.where(available.any(axis=1), product, fallback)
        quantity = s.weighted(op["quantity_weights"], m) + 1
        discount = np.where(s.per_mille(op["discount_per_mille"], m), s.integers(5, 20, m), 0)
        unit = self.product_price[product] * (100 - discount) // 100
        line_total = quantity * unit
        subtotal = np.bincount(item_order, weights=line_total, minlength=n).astype(np.int64)
        tax = (subtotal * op["tax_percent"] + 50) // 100
        ship_choice = np.asarray(op["shipping_cents"])[s.integers(0, len(op["shipping_cents"]) - 1, n)]
        shipping = np.where(subtotal >= op["free_shipping_from_cents"], 0, ship_choice)
        # status follows the timestamps relative to the as-of date
        cancelled = s.per_mille(op["cancelled_per_mille"], n)
        shipped = created + s.integers(20 * 3600, 90 * 3600, n)
        delivered = shipped + s.integers(24 * 3600, 7 * DAY, n)
        age = self.as_of - created
        status = np.where(
            cancelled, "cancelled",
            np.where(delivered <= self.as_of, "delivered",
                     np.where(shipped <= self.as_of, "shipped", np.where(age >= 12 * 3600, "processing", "pending"))),
        )  # fmt: skip
        has_shipped = (status == "shipped") | (status == "delivered")
        has_delivered = status == "delivered"
        updated = np.where(has_delivered, delivered, np.where(has_shipped, shipped, created + np.where(cancelled, 3600, 0)))
        # addresses
        cities = words.table("cities.txt")
        streets, kinds = words.words("street_names.txt"), words.words("street_kinds.txt")
        numbers = s.integers(1, 240, n * 2).reshape(n, 2)
        street_pick = s.integers(0, 10_000, n * 2).reshape(n, 2)
        other_city = s.weighted([int(c[4]) for c in cities], n)
        billing_differs = s.per_mille(op["billing_differs_per_mille"], n)
        channel = s.picks(["web", "web", "web", "ios", "android"], n)
        coupon = s.per_mille(80, n)
        created_txt, updated_txt = ts(created), ts(updated)
        shipped_txt = ts_or_null(shipped, has_shipped)
        delivered_txt = ts_or_null(delivered, has_delivered)
        subtotal_txt, tax_txt, shipping_txt = cents(subtotal), cents(tax), cents(shipping)
        user_ids = self.user_ids
        yymm = np.datetime_as_string(created.astype("datetime64[s]"), unit="M").tolist()

        def address(city: list[str], number: int, pick: int) -> str:
            street = f"{number} {streets[pick % len(streets)]} {kinds[pick // 31 % len(kinds)]}"
            postal = f"{city[3]}{pick % 90 + 10}" if city[2] in NUMERIC_POSTAL else city[3]
            return composite([street, city[0], city[1], postal, city[2]])

        lines = []
        for i in range(n):
            u = int(owner[i])
            home = cities[int(self.user_city[u])]
            ship_addr = address(home, int(numbers[i, 0]), int(street_pick[i, 0]))
            bill_addr = address(cities[int(other_city[i])], int(numbers[i, 1]), int(street_pick[i, 1])) if billing_differs[i] else ship_addr
            meta: dict[str, object] = {"channel": channel[i]}
            if coupon[i]:
                meta["coupon"] = f"SAVE{int(numbers[i, 1]) % 4 * 5 + 5}"
            number = f"ORD-{yymm[i][2:4]}{yymm[i][5:7]}-{i + 1:06d}"
            lines.append("\t".join([
                ids[i], number, user_ids[u], ship_addr, bill_addr, str(status[i]),
                subtotal_txt[i], tax_txt[i], shipping_txt[i], js(meta),
                created_txt[i], updated_txt[i], shipped_txt[i], delivered_txt[i],
            ]))  # fmt: skip
        # products, now that open orders fix the reserved stock
        open_order = (status == "pending") | (status == "processing")
        open_item = open_order[item_order]
        reserved = np.bincount(product[open_item], weights=quantity[open_item], minlength=n_products).astype(np.int64)
        sp = self.stream("stock")
        free = np.where(sp.per_mille(50, n_products), 0, sp.integers(1, 400, n_products))
        self.product_stock, self.product_free = reserved + free, free
        product_lines = []
        for i, row in enumerate(self._product_rows):
            row[7], row[8] = str(self.product_stock[i]), str(reserved[i])
            row.append(row[11])  # updated_at = created_at
            product_lines.append("\t".join(row))
        yield TableData("products", self._product_columns, product_lines)
        yield TableData("orders", ("id", "order_number", "user_id", "shipping_address", "billing_address", "status", "subtotal",
                                   "tax_amount", "shipping_amount", "metadata", "created_at", "updated_at", "shipped_at",
                                   "delivered_at"), lines)  # fmt: skip
        item_ids = s.uuids(m)
        unit_txt, item_created = cents(unit), ts(created[item_order])
        product_created_txt = ts(self.product_created)
        item_lines = []
        for j in range(m):
            p = int(product[j])
            sku, name = self.product_meta[p]
            snapshot = js({"sku": sku, "name": name, "price": unit_txt[j]})
            item_lines.append("\t".join([
                item_ids[j], ids[int(item_order[j])], self.product_ids[p], product_created_txt[p], str(quantity[j]),
                unit_txt[j], snapshot, item_created[j],
            ]))  # fmt: skip
        yield TableData("order_items", ("id", "order_id", "product_id", "product_created_at", "quantity", "unit_price",
                                        "product_snapshot", "created_at"), item_lines)  # fmt: skip

    def inventory(self) -> TableData:
        s = self.stream("inventory")
        n = len(self.product_ids)
        version = s.integers(1, 20, n)
        created_txt = ts(self.product_created)
        updated_txt = ts(np.maximum(self.product_created, self.as_of - s.integers(DAY, 60 * DAY, n)))
        lines = [
            f"{self.product_ids[i]}\t{created_txt[i]}\t{self.product_free[i]}\t{version[i]}\t{updated_txt[i]}" for i in range(n)
        ]
        return TableData("inventory", ("product_id", "product_created_at", "quantity", "version", "updated_at"), lines)

    def user_events(self) -> TableData:
        s = self.stream("user_events")
        target = self.rows("user_events", 1000)
        sessions = max(10, target // 6)
        activity = 2 + self.user_order_count  # buyers browse more
        who = s.weighted(activity, sessions)
        first_day = np.maximum(self._day_of(self.user_created) + 1, 0)
        last_day = np.minimum(self._day_of(self.user_end) - 1, self.days - 1)
        ok = first_day <= last_day
        who = who[ok[who]]
        day = s.within(self._day_weights, first_day[who], last_day[who])
        start = self._seconds_in_days(s, day)
        per_session = s.integers(1, 11, len(who))
        session_of = np.repeat(np.arange(len(who)), per_session)
        gaps = s.integers(5, 600, len(session_of))
        first_of_session = np.concatenate([[0], np.cumsum(per_session)[:-1]])
        gaps[first_of_session] = 0
        offsets = np.cumsum(gaps)
        offsets -= np.repeat(offsets[first_of_session], per_session)
        created = start[session_of] + offsets
        order = np.lexsort((np.arange(len(created)), created))
        session_of, created = session_of[order], created[order]
        kinds = ["page_view", "product_view", "add_to_cart", "search", "checkout", "login"]
        kind = s.weighted([60, 20, 8, 8, 2, 2], len(created))
        product = s.integers(0, len(self.product_ids) - 1, len(created))
        terms = words.words("interests.txt")
        term = s.integers(0, len(terms) - 1, len(created))
        users = self.user_ids
        skus = [meta[0] for meta in self.product_meta]
        lines = []
        for b in blocks(len(created)):
            columns = zip(who[session_of[b]].tolist(), kind[b].tolist(), ts(created[b]), product[b].tolist(), term[b].tolist(), strict=True)
            for u, kd, created_txt, pr, tm in columns:
                k = kinds[kd]
                if k in ("product_view", "add_to_cart"):
                    props = f'{{"sku": "{skus[pr]}"}}'
                elif k == "search":
                    props = f'{{"query": "{terms[tm]}"}}'
                else:
                    props = "{}"
                lines.append(f"{users[u]}\t{k}\t{created_txt}\t{props}")
        return TableData("user_events", ("user_id", "event_type", "created_at", "properties"), lines)

    def events(self) -> TableData:
        s = self.stream("events")
        n = self.rows("events", 50)
        templates = words.table("event_names.txt")
        pick = s.integers(0, len(templates) - 1, n)
        start = np.sort(s.integers(self.start, self.as_of - DAY, n))
        span = {"sale": (DAY, 3 * DAY), "webinar": (3600, 2 * 3600), "maintenance": (2 * 3600, 8 * 3600), "promotion": (5 * DAY, 10 * DAY)}
        draws = s.u64(n)
        kinds = [templates[i][0] for i in pick.tolist()]
        low = np.array([span[k][0] for k in kinds], dtype=np.int64)
        high = np.array([span[k][1] for k in kinds], dtype=np.int64)
        end = start + low + (draws % (high - low + 1).astype(np.uint64)).astype(np.int64)
        lines = []
        for i, (p, start_txt, end_txt) in enumerate(zip(pick.tolist(), ts(start), ts(end), strict=True)):
            kind, template = templates[p]
            lines.append(f"{template.replace('{n}', str(i + 1))}\t{kind}\t{start_txt}\t{end_txt}")
        return TableData("events", ("name", "kind", "start_time", "end_time"), lines)

    def logs(self) -> TableData:
        s = self.stream("logs")
        lp = self.p["logs"]
        n = self.rows("logs", 1000)
        period = self.as_of - self.start
        base = self.start + np.arange(n, dtype=np.int64) * period // n
        created = base + (s.u64(n) % np.uint64(max(1, period // n))).astype(np.int64)
        templates = words.table("log_messages.txt")
        by_level = {level: [t for t in templates if t[1] == level] for level in lp["levels"]}
        level = s.weighted(lp["level_weights"], n)
        pick = s.integers(0, 10_000, n)
        number = s.integers(1, 99_999, n)
        duration = s.integers(0, 44, n) ** 2 + s.integers(1, 9, n)
        no_duration = s.per_mille(lp["no_duration_per_mille"], n)
        levels = lp["levels"]
        choices = [by_level[name] for name in levels]
        lines = []
        for b in blocks(n):
            columns = zip(ts(created[b]), *(a[b].tolist() for a in (level, pick, number, duration, no_duration)), strict=True)
            for created_txt, lv, pk, num, dur, missing in columns:
                service, _, message = choices[lv][pk % len(choices[lv])]
                lines.append(f"{created_txt}\t{levels[lv]}\t{service}\t{message.replace('{n}', str(num))}\t{NULL if missing else dur}")
        return TableData("logs", ("created_at", "level", "service", "message", "duration_ms"), lines)

    def audit_log(self) -> TableData:
        s = self.stream("audit")
        n = self.rows("audit", 30)
        changed = np.sort(self._on_boundaries(s.integers(self.start, self.as_of - 60, n)))
        who = s.integers(0, len(self.user_ids) - 1, n)
        anonymous = s.per_mille(300, n)
        inserted = s.per_mille(100, n)
        changed_txt = ts(changed)
        lines = []
        for i in range(n):
            uid = self.user_ids[int(who[i])]
            if inserted[i]:
                op, old, new = "INSERT", r"\N", js({"id": uid, "role": "user"})
                query = "INSERT INTO users (email, username, password_hash) VALUES ($1, $2, $3)"
            else:
                op, old, new = "UPDATE", js({"id": uid, "last_login_at": None}), js({"id": uid, "last_login_at": changed_txt[i]})
                query = "UPDATE users SET last_login_at = now() WHERE id = $1"
            actor = r"\N" if anonymous[i] else uid
            lines.append(f"users\t{op}\t{actor}\t{changed_txt[i]}\t{old}\t{new}\t{query}")
        return TableData("audit_log", ("table_name", "operation", "user_id", "changed_at", "old_data", "new_data", "query"), lines)


def generate(seed: int | None = None, scale: float = 1.0, *, boundaries: bool = False) -> list[TableData]:
    """All tables in load order (the products placeholder dropped)."""
    return [t for t in Shop(seed, scale, boundaries=boundaries).tables() if t.lines or t.table != "products"]


def digest_table(digest: Any, table: TableData, pieces: Iterable[bytes]) -> None:
    """Add one table (its name, columns and COPY text ``pieces``) to a running checksum."""
    digest.update(table.table.encode() + b"\0" + ",".join(table.columns).encode() + b"\0")
    for piece in pieces:
        digest.update(piece)


def checksum(tables: list[TableData]) -> str:
    """A checksum of the generated data, in load order."""
    digest = hashlib.sha256()
    for t in tables:
        digest_table(digest, t, t.chunks())
    return digest.hexdigest()
