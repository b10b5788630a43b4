"""Seeded generator of realistic before/after snapshots, with the exact expected diff counts.

    python -m bench.common.generate --records 1000000 --out /tmp/bench-data/1m --seed 42

Writes, into --out (or, without --out, into `$BENCH_DATA/<name of the parameters>`):

    before/part-0000.ndjson .. part-000{F-1}.ndjson   yesterday's snapshot, F files (default 4)
    after/part-0000.ndjson  .. part-000{F-1}.ndjson   today's snapshot
    truth.json                                        parameters and the exact expected counts

`truth.json` is written last: a folder without it is incomplete. A rerun with the same
parameters (records, seed, rates, files) finds `truth.json` and reuses the data (a cache);
other parameters in the same folder regenerate it.

Records (~400 bytes of NDJSON each; orjson, UTF-8, compact):

    {"id": 93241571301, "customer": {"name": "João Kowalski", "email": ..., "address":
     {"street": ..., "city": "Kraków", "country": "PL"}}, "tags": [...],
     "orders": [{"sku": "SKU-004512", "qty": 3, "price": 19.99}, ...], "balance": 1234.56,
     "counters": {"logins": 87, "events": 1152921504606846977}, "flags": {...},
     "created_on": "2019-03-02", "updated_at": "...Z", ["note": "..."]}

Ids are distinct, scattered 42-bit integers (a bijection of the record index), not sorted.
`counters.events` lies above 2**60: an update that adds 1 to it is invisible to any tool that
compares numbers through a float64. `note` is present in ~10% of records.

The fate of each before record (decided by the seeded generator, so counts are exact but not
exactly the rates):

    delete    (--deletes,  default 5%)   absent from after
    update    (--updates,  default 8%)   exactly one leaf changes (kinds below)
    rewrite   (--rewrites, default 2%)   different bytes, equal JSON by the contract: counted
                                         as unchanged (kinds below)
    unchanged (the rest)                 the very same bytes in after
    insert    (--inserts,  default 5% of --records) new ids, only in after

so that with the defaults 10% of the common records change bytes, and 8% really change.

Update kinds (one changed leaf each): city (customer.address.city), email, tags (one tag
appended: the array leaf), qty (orders[0].qty + 1: the orders array leaf), balance (+0.01..),
counter (counters.events + 1, above 2**53), flag (flags.active flipped), touch (updated_at),
note (note set where it was absent).

Rewrite kinds (contract-equal, byte-different; every typed JSON reader parses both sides to
the same values): whitespace (`", "` / `": "` separators), unicode_escape (`\\u00e9` escapes
instead of UTF-8; only records with non-ASCII text get it), reorder (top-level members in
reverse order; nested objects keep their order so that every reader infers one nested
schema), null_member (`"note": null` added where note was absent), number_form (a whole
balance written `1500` instead of `1500.0`).

The after snapshot holds, per file, the surviving records of the matching before file plus a
share of the inserts, shuffled within chunks of --chunk records, so a tool cannot rely on both
snapshots having the same order. Generation is parallel over files (--jobs, default: cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GENERATOR_VERSION = 1  # bump when the records or their fates change: invalidates the cache

DEFAULT_ROOT = os.environ.get("BENCH_DATA", "/tmp/bench-data")

# Each update kind changes exactly one leaf (`apply_update`): the output column it shows in.
UPDATE_COLUMN = {
    "city": "customer.address.city",
    "email": "customer.email",
    "tags": "tags",
    "qty": "orders",
    "balance": "balance",
    "counter": "counters.events",
    "flag": "flags.active",
    "touch": "updated_at",
    "note": "note",
}
UPDATE_KINDS = tuple(UPDATE_COLUMN)
REWRITE_KINDS = ("whitespace", "unicode_escape", "reorder", "null_member", "number_form")

_ID_MULT = 0x9E3779B97F4A7C15 | 1  # odd: i -> i*M mod 2**42 is a bijection for i < 2**42
_ID_MASK = (1 << 42) - 1

FIRST = [
    "João",
    "Maria",
    "José",
    "Ana",
    "Zoë",
    "Łukasz",
    "Søren",
    "Chloé",
    "Mehmet",
    "Aiko",
    "李娜",
    "Олег",
    "Núria",
    "Björn",
    "Ahmed",
    "John",
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Sofia",
    "Mateo",
    "Amélie",
    "Jürgen",
    "Ingrid",
    "Priya",
    "Kenji",
    "Fatma",
    "Carlos",
    "Beatriz",
    "Pedro",
    "Lucía",
    "Hannah",
    "Oliver",
    "Mia",
    "Ethan",
    "Grace",
    "Leo",
]
LAST = [
    "Silva",
    "Santos",
    "Kowalski",
    "Müller",
    "Nguyễn",
    "García",
    "Rossi",
    "Dubois",
    "Öztürk",
    "Sato",
    "王",
    "Иванов",
    "Smith",
    "Johnson",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Pérez",
    "Costa",
    "Ferreira",
    "Almeida",
    "Andersson",
    "Nowak",
    "Novák",
    "Horvát",
    "Papadopoulos",
    "Jensen",
    "Kim",
]
ASCII_FIRST = [f for f in FIRST if f.isascii()]
ASCII_LAST = [name for name in LAST if name.isascii()]
CITIES = [
    ("São Paulo", "BR"),
    ("Rio de Janeiro", "BR"),
    ("Belo Horizonte", "BR"),
    ("Lisboa", "PT"),
    ("Porto", "PT"),
    ("Kraków", "PL"),
    ("Warszawa", "PL"),
    ("München", "DE"),
    ("Berlin", "DE"),
    ("Zürich", "CH"),
    ("Genève", "CH"),
    ("Москва", "RU"),
    ("東京", "JP"),
    ("Osaka", "JP"),
    ("New York", "US"),
    ("Austin", "US"),
    ("Seattle", "US"),
    ("Toronto", "CA"),
    ("Montréal", "CA"),
    ("Madrid", "ES"),
    ("Málaga", "ES"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("İstanbul", "TR"),
    ("Bogotá", "CO"),
    ("Ciudad de México", "MX"),
    ("London", "GB"),
    ("Dublin", "IE"),
    ("Amsterdam", "NL"),
    ("København", "DK"),
]
STREETS = [
    "Rua das Flores",
    "Avenida Paulista",
    "Main Street",
    "Hauptstraße",
    "ulica Długa",
    "Rue de Rivoli",
    "Calle Mayor",
    "Baker Street",
    "Broadway",
    "Via Roma",
    "Nørregade",
    "Elm Street",
    "Oak Avenue",
    "Rua Augusta",
    "Gran Vía",
    "Bahnhofstrasse",
]
TAGS = [
    "vip",
    "newsletter",
    "beta",
    "churn-risk",
    "b2b",
    "promo",
    "wholesale",
    "early-adopter",
    "mobile",
    "gift",
    "loyalty",
    "émigré",
    "referral",
    "support-priority",
]
NOTES = [
    "prefers e-mail contact",
    "call after 18h",
    "address verified by phone",
    "cliente desde a loja física",
    "VAT exempt",
    "requested invoice in German",
    "bitte nicht vor 9 Uhr anrufen",
    "fraud check passed ✓",
]
DOMAINS = ["example.com", "mail.org", "corp.net", "exemplo.br"]


@dataclass(frozen=True)
class Params:
    records: int
    seed: int = 42
    inserts: float = 0.05
    deletes: float = 0.05
    updates: float = 0.08
    rewrites: float = 0.02
    files: int = 4
    chunk: int = 20_000

    def __post_init__(self) -> None:
        if self.records < self.files:
            raise ValueError("need at least one record per file")
        if min(self.inserts, self.deletes, self.updates, self.rewrites) < 0:
            raise ValueError("rates must be >= 0")
        if self.deletes + self.updates + self.rewrites > 1:
            raise ValueError("deletes + updates + rewrites must be <= 1")

    def as_dict(self) -> dict[str, Any]:
        return {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)}

    def name(self) -> str:
        """Folder name of this data set in the cache root, e.g. `n1000000-s42-i5-d5-u8-r2-f4`."""

        def pct(x: float) -> str:
            return f"{x * 100:g}"

        return (
            f"n{self.records}-s{self.seed}-i{pct(self.inserts)}-d{pct(self.deletes)}"
            f"-u{pct(self.updates)}-r{pct(self.rewrites)}-f{self.files}-v{GENERATOR_VERSION}"
        )


@dataclass(frozen=True)
class Dataset:
    """A generated data set: where its snapshots are and what a correct diff reports."""

    root: Path
    truth: dict[str, Any]

    @property
    def before(self) -> Path:
        return self.root / "before"

    @property
    def after(self) -> Path:
        return self.root / "after"

    def files(self, side: str) -> list[Path]:
        return sorted((self.root / side).glob("part-*.ndjson"))

    @property
    def expected(self) -> dict[str, int]:
        """`inserted`, `deleted`, `updated`, `unchanged`: what a contract-correct diff reports."""
        c = self.truth["counts"]
        return {k: c[k] for k in ("inserted", "deleted", "updated", "unchanged")}


# ---------------------------------------------------------------------------------------------
# Records


def record_id(index: int) -> int:
    return ((index * _ID_MULT) & _ID_MASK) + 1


def _iso(rng: random.Random, year_lo: int, year_hi: int) -> str:
    return (
        f"{rng.randint(year_lo, year_hi)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    )


def make_record(
    index: int,
    rng: random.Random,
    *,
    ascii_only: bool = False,
    unicode: bool = False,
    with_note: bool | None = None,
    whole_balance: bool = False,
    min_orders: int = 0,
) -> dict[str, Any]:
    """One record of the data set. Keyword flags force what a fate needs (e.g. a note absent)."""
    r = rng.random
    firsts, lasts = (ASCII_FIRST, ASCII_LAST) if ascii_only else (FIRST, LAST)
    first = firsts[int(r() * len(firsts))]
    last = lasts[int(r() * len(lasts))]
    if unicode and (first + last).isascii():
        first = "Zoë"
    city, country = CITIES[int(r() * len(CITIES))]
    if ascii_only and not city.isascii():
        city, country = "Austin", "US"
    n_tags = int(r() * 3)
    n_orders = max(min_orders, int(r() * 2.1))
    if whole_balance or r() < 0.05:
        balance = float(int(r() * 5000))
    else:
        balance = round(r() * 100_000 - 1_000, 2)
    rec: dict[str, Any] = {
        "id": record_id(index),
        "customer": {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@{DOMAINS[index % 4]}",
            "address": {
                "street": f"{int(r() * 900) + 1} {STREETS[int(r() * len(STREETS))]}",
                "city": city,
                "country": country,
            },
        },
        "tags": [TAGS[int(r() * len(TAGS))] for _ in range(n_tags)],
        "orders": [
            {
                "sku": f"SKU-{int(r() * 1_000_000):06d}",
                "qty": int(r() * 9) + 1,
                "price": round(r() * 500 + 0.5, 2),
            }
            for _ in range(n_orders)
        ],
        "balance": balance,
        "counters": {"logins": int(r() * 100), "events": (1 << 60) + int(r() * (1 << 40))},
        "flags": {"active": r() < 0.9, "verified": r() < 0.6},
        "created_on": _iso(rng, 2015, 2025)[:10],
        "updated_at": _iso(rng, 2025, 2026),
    }
    if with_note is None:
        with_note = r() < 0.1
    if with_note:
        rec["note"] = NOTES[int(r() * len(NOTES))]
    return rec


def _dump(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


def apply_update(rec: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    """A copy of `rec` with exactly one leaf changed (the `kind`)."""
    new = orjson.loads(orjson.dumps(rec))
    cust, addr = new["customer"], new["customer"]["address"]
    if kind == "city":
        old = addr["city"]
        while addr["city"] == old:
            addr["city"] = CITIES[int(rng.random() * len(CITIES))][0]
    elif kind == "email":
        cust["email"] = "new." + cust["email"]
    elif kind == "tags":
        new["tags"].append(TAGS[int(rng.random() * len(TAGS))])
    elif kind == "qty":
        new["orders"][0]["qty"] += 1
    elif kind == "balance":
        new["balance"] = round(new["balance"] + 0.01 + int(rng.random() * 1000) / 100, 2)
    elif kind == "counter":
        new["counters"]["events"] += 1
    elif kind == "flag":
        new["flags"]["active"] = not new["flags"]["active"]
    elif kind == "touch":
        old = new["updated_at"]
        while new["updated_at"] == old:
            new["updated_at"] = _iso(rng, 2026, 2026)
    elif kind == "note":
        new["note"] = NOTES[int(rng.random() * len(NOTES))]
    else:
        raise ValueError(kind)
    return new


def apply_rewrite(rec: dict[str, Any], kind: str) -> bytes:
    """Other bytes for the same JSON value (contract section 3)."""
    if kind == "whitespace":
        return json.dumps(rec, ensure_ascii=False).encode()
    if kind == "unicode_escape":
        return json.dumps(rec, ensure_ascii=True, separators=(",", ":")).encode()
    if kind == "reorder":
        return _dump(dict(reversed(list(rec.items()))))
    if kind == "null_member":
        return _dump({**rec, "note": None})
    if kind == "number_form":
        return _dump({**rec, "balance": int(rec["balance"])})
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Files


def _split(total: int, parts: int, i: int) -> tuple[int, int]:
    return total * i // parts, total * (i + 1) // parts


def _write_file(args: tuple[Params, int, str]) -> dict[str, Any]:
    """Write before/part-f and after/part-f; return the counts of this file."""
    p, f, tmp_root = args
    lo, hi = _split(p.records, p.files, f)
    n_inserts = round(p.records * p.inserts)
    ilo, ihi = _split(n_inserts, p.files, f)
    n_chunks = max(1, -(-(hi - lo) // p.chunk))
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    bytes_out = {"before": 0, "after": 0}
    name = f"part-{f:04d}.ndjson"
    t_upd = p.deletes + p.updates
    t_rew = t_upd + p.rewrites
    with (
        open(Path(tmp_root, "before", name), "wb") as fb,
        open(Path(tmp_root, "after", name), "wb") as fa,
    ):
        for c in range(n_chunks):
            rng = random.Random(f"{p.seed}:{f}:{c}")
            clo, chi = lo + (hi - lo) * c // n_chunks, lo + (hi - lo) * (c + 1) // n_chunks
            before_lines: list[bytes] = []
            after_lines: list[bytes] = []
            for i in range(clo, chi):
                u = rng.random()
                if u < p.deletes:
                    line = _dump(make_record(i, rng))
                    counts["deleted"] += 1
                elif u < t_upd:
                    kind = UPDATE_KINDS[int(rng.random() * len(UPDATE_KINDS))]
                    rec = make_record(
                        i,
                        rng,
                        min_orders=1 if kind == "qty" else 0,
                        with_note=False if kind == "note" else None,
                    )
                    line = _dump(rec)
                    after_lines.append(_dump(apply_update(rec, kind, rng)))
                    counts["updated"] += 1
                    kinds["update:" + kind] += 1
                elif u < t_rew:
                    kind = REWRITE_KINDS[int(rng.random() * len(REWRITE_KINDS))]
                    rec = make_record(
                        i,
                        rng,
                        unicode=kind == "unicode_escape",
                        with_note=False if kind == "null_member" else None,
                        whole_balance=kind == "number_form",
                    )
                    line = _dump(rec)
                    new = apply_rewrite(rec, kind)
                    assert new != line, kind
                    after_lines.append(new)
                    counts["unchanged"] += 1
                    counts["rewritten"] += 1
                    kinds["rewrite:" + kind] += 1
                else:
                    line = _dump(make_record(i, rng))
                    after_lines.append(line)
                    counts["unchanged"] += 1
                before_lines.append(line)
            # This chunk's share of the inserts.
            jlo = ilo + (ihi - ilo) * c // n_chunks
            jhi = ilo + (ihi - ilo) * (c + 1) // n_chunks
            for j in range(jlo, jhi):
                after_lines.append(_dump(make_record(p.records + j, rng)))
                counts["inserted"] += 1
            rng.shuffle(after_lines)
            data_b = b"\n".join(before_lines) + b"\n"
            data_a = b"\n".join(after_lines) + b"\n" if after_lines else b""
            fb.write(data_b)
            fa.write(data_a)
            bytes_out["before"] += len(data_b)
            bytes_out["after"] += len(data_a)
            if n_chunks >= 10 and (c + 1) % (n_chunks // 5) == 0 and c + 1 < n_chunks:
                print(
                    f"[generate]   {name}: {(c + 1) * 100 // n_chunks}% "
                    f"({chi - lo:,} of {hi - lo:,} records)",
                    file=sys.stderr,
                    flush=True,
                )
    return {
        "file": name,
        "counts": dict(counts),
        "kinds": dict(kinds),
        "bytes": bytes_out,
        "before_records": hi - lo,
    }


def load(root: str | Path) -> Dataset | None:
    """The data set in `root`, or None when it is absent or incomplete (no truth.json)."""
    truth_path = Path(root) / "truth.json"
    if not truth_path.is_file():
        return None
    return Dataset(Path(root), json.loads(truth_path.read_text()))


def ensure(
    params: Params,
    out: str | Path | None = None,
    *,
    jobs: int | None = None,
    force: bool = False,
    log=sys.stderr,
) -> Dataset:
    """The data set of `params`, generated into `out` unless it is already there (the cache)."""
    root = Path(out) if out else Path(DEFAULT_ROOT) / params.name()
    existing = load(root)
    if existing and not force and existing.truth.get("params") == params.as_dict():
        print(f"[generate] reusing {root} (truth.json matches the parameters)", file=log)
        return existing
    if root.exists():
        if existing is None and any(root.iterdir()) and not (root / "before").exists():
            raise SystemExit(f"{root} exists and is not a bench data set; refusing to replace it")
        shutil.rmtree(root)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "before").mkdir(parents=True)
    (tmp / "after").mkdir(parents=True)
    jobs = jobs or min(os.cpu_count() or 1, params.files)
    t0 = time.perf_counter()
    print(
        f"[generate] {params.records:,} records x 2 snapshots, {params.files} files each, "
        f"{jobs} processes -> {root}",
        file=log,
        flush=True,
    )
    results = []
    tasks = [(params, f, str(tmp)) for f in range(params.files)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for res in pool.imap_unordered(_write_file, tasks):
            results.append(res)
            done = sum(r["before_records"] for r in results)
            el = time.perf_counter() - t0
            print(
                f"[generate] {len(results)}/{params.files} files, {done:,} before records, "
                f"{el:.0f} s elapsed",
                file=log,
                flush=True,
            )
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    size = {"before": 0, "after": 0}
    for res in results:
        counts.update(res["counts"])
        kinds.update(res["kinds"])
        for side in size:
            size[side] += res["bytes"][side]
    truth = {
        "params": params.as_dict(),
        "counts": {
            "before_records": params.records,
            "after_records": params.records - counts["deleted"] + counts["inserted"],
            "inserted": counts["inserted"],
            "deleted": counts["deleted"],
            "updated": counts["updated"],
            "unchanged": counts["unchanged"],
            "rewritten": counts["rewritten"],
        },
        "kinds": dict(sorted(kinds.items())),
        "bytes": size,
        "files": params.files,
        "generated_in_s": round(time.perf_counter() - t0, 1),
    }
    (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    os.rename(tmp, root)
    print(
        f"[generate] done in {truth['generated_in_s']} s: before {size['before'] / 1e6:,.0f} MB, "
        f"after {size['after'] / 1e6:,.0f} MB; expected c={counts['inserted']:,} "
        f"u={counts['updated']:,} d={counts['deleted']:,} (+{counts['rewritten']:,} rewrites, "
        "unchanged)",
        file=log,
        flush=True,
    )
    return Dataset(root, truth)


def check(ds: Dataset, log=sys.stderr) -> dict[str, int]:
    """Recount the diff with the contract's reference (`diffcore.jsonvalue`, pure Python: about
    a minute per million records) and compare with truth.json. Needs libs/diffcore on the path."""
    from diffcore.jsonvalue import comparable_leaves, loads

    def digests(side: str) -> dict[Any, int]:
        out: dict[Any, int] = {}
        for path in ds.files(side):
            with open(path, "rb") as f:
                for line in f:
                    if line.strip():
                        rec = loads(line)
                        if rec["id"] in out:
                            raise AssertionError(f"duplicate id {rec['id']} in {path}")
                        out[rec["id"]] = hash(frozenset(comparable_leaves(rec).items()))
        print(f"[check] {side}: {len(out):,} records", file=log, flush=True)
        return out

    b, a = digests("before"), digests("after")
    common = b.keys() & a.keys()
    updated = sum(1 for k in common if b[k] != a[k])
    found = {
        "inserted": len(a.keys() - b.keys()),
        "deleted": len(b.keys() - a.keys()),
        "updated": updated,
        "unchanged": len(common) - updated,
    }
    if found != ds.expected:
        raise AssertionError(f"truth.json says {ds.expected}, the reference finds {found}")
    print(f"[check] truth.json agrees with the contract's reference: {found}", file=log)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.common.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--records", type=int, required=True, help="records in the before snapshot")
    ap.add_argument("--out", help=f"folder (default: $BENCH_DATA or {DEFAULT_ROOT}, /<params>)")
    default = {f.name: f.default for f in dataclasses.fields(Params)}
    ap.add_argument("--seed", type=int, default=default["seed"])
    for name, what in (
        ("inserts", "share of --records"),
        ("deletes", "share of before"),
        ("updates", "real changes"),
        ("rewrites", "byte-different, contract-equal"),
    ):
        ap.add_argument(
            f"--{name}", type=float, default=default[name], help=f"{what} (%(default)s)"
        )
    ap.add_argument(
        "--files", type=int, default=default["files"], help="files per snapshot (%(default)s)"
    )
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    ap.add_argument(
        "--check",
        action="store_true",
        help="recount with diffcore.jsonvalue (needs PYTHONPATH=libs/diffcore:.)",
    )
    a = ap.parse_args(argv)
    params = Params(a.records, a.seed, a.inserts, a.deletes, a.updates, a.rewrites, a.files)
    ds = ensure(params, a.out, jobs=a.jobs, force=a.force)
    if a.check:
        check(ds)
    print(ds.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
