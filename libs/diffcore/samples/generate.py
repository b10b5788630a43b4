"""Generate the bundled sample snapshots: `yesterday/` and `today/` (seeded, reproducible).

    python libs/diffcore/samples/generate.py          # rewrites both folders

300 nested customer records yesterday; today has 12 inserts, 9 deletes, about 50 updates
(nested fields, arrays, a big integer beyond 2**53, `updated_at`), 5 records rewritten with the
same content (members reordered, `12.5` as `12.50`, a null member added: unchanged by contract),
and schema drift: a field added (`loyalty.tier`, on inserts and some updates), a field whose
type changes (`phone`: a number yesterday, a string on the updated records today) and a field
removed (`legacy_code`, on a few records yesterday, dropped today). Yesterday is split over two
files, today is one file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261125
N = 300

FIRST = [
    "Ana",
    "Bruno",
    "Carla",
    "Diego",
    "Elisa",
    "Fábio",
    "Gabi",
    "Hugo",
    "Iara",
    "João",
    "Kátia",
    "Luís",
    "Marta",
    "Nuno",
    "Olga",
    "Paulo",
    "Rita",
    "Sérgio",
    "Tânia",
    "Zoë",
]
LAST = ["Silva", "Souza", "Costa", "Pereira", "Almeida", "Ferreira", "Rocha", "Lima", "Gomes"]
CITIES = [
    ("São Paulo", "BR"),
    ("Rio de Janeiro", "BR"),
    ("Lisboa", "PT"),
    ("Porto", "PT"),
    ("Curitiba", "BR"),
    ("Recife", "BR"),
    ("Braga", "PT"),
]
TAGS = ["vip", "b2b", "newsletter", "churn-risk", "gift"]


def customer(rng: random.Random, i: int) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, country = rng.choice(CITIES)
    return {
        "id": i,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "phone": 5511900000000 + rng.randrange(10**8),
        "active": rng.random() < 0.8,
        "balance": round(rng.uniform(0, 5000), 2),
        "lifetime_events": 9007199254740993 + i,  # beyond 2**53: must stay exact
        "address": {
            "street": f"Rua {rng.randrange(1, 999)}",
            "city": city,
            "country": country,
            "geo": {"lat": round(rng.uniform(-30, -3), 4), "lon": round(rng.uniform(-50, -8), 4)},
        },
        "tags": sorted(rng.sample(TAGS, rng.randrange(0, 3))),
        "orders": [
            {"sku": f"SKU-{rng.randrange(1000, 9999)}", "qty": rng.randrange(1, 5)}
            for _ in range(rng.randrange(0, 3))
        ],
        **({"legacy_code": f"L{rng.randrange(10**5):05d}"} if i % 25 == 0 else {}),
        "updated_at": "2026-11-24T03:00:00Z",
    }


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def main() -> None:
    rng = random.Random(SEED)
    yesterday = [customer(rng, i) for i in range(1, N + 1)]
    ids = [r["id"] for r in yesterday]
    deleted = set(rng.sample(ids, 9))
    remaining = [i for i in ids if i not in deleted]
    updated = set(rng.sample(remaining, 40))
    rewritten = set(rng.sample([i for i in remaining if i not in updated], 5))
    today_lines = []
    for record in yesterday:
        i = record["id"]
        if i in deleted:
            continue
        new = json.loads(json.dumps(record))
        if new.pop("legacy_code", None) is not None:  # removed field
            new["updated_at"] = "2026-11-25T03:00:00Z"
        if i in updated:
            new["phone"] = f"+{record['phone']}"  # type change: number -> string
            if i % 3 == 0:
                new["loyalty"] = {"tier": rng.choice(["gold", "silver", "bronze"])}  # added
            change = rng.randrange(5)
            if change == 0:
                new["address"]["city"], new["address"]["country"] = rng.choice(CITIES)
            elif change == 1:
                new["balance"] = round(new["balance"] + rng.uniform(1, 100), 2)
            elif change == 2:
                new["tags"] = sorted(set(new["tags"]) | {rng.choice(TAGS)}) + ["updated"]
            elif change == 3:
                new["active"] = not new["active"]
            else:
                new["lifetime_events"] += 1
            new["updated_at"] = "2026-11-25T03:00:00Z"
        if i in rewritten:  # same content, different bytes: unchanged
            new = dict(reversed(list(new.items())))
            new["middle_name"] = None
            today_lines.append(
                dumps(new).replace(
                    f'"balance":{new["balance"]}',
                    f'"balance":{new["balance"]}' + ("0" if "." in str(new["balance"]) else ".0"),
                )
            )
            continue
        today_lines.append(dumps(new))
    for i in range(N + 1, N + 13):
        record = customer(rng, i)
        record.pop("legacy_code", None)
        record["phone"] = f"+{record['phone']}"
        record["loyalty"] = {"tier": "new"}
        today_lines.append(dumps(record))
    (HERE / "yesterday").mkdir(exist_ok=True)
    (HERE / "today").mkdir(exist_ok=True)
    half = N // 2
    (HERE / "yesterday" / "customers-0.jsonl").write_text(
        "".join(dumps(r) + "\n" for r in yesterday[:half]), encoding="utf-8"
    )
    (HERE / "yesterday" / "customers-1.jsonl").write_text(
        "".join(dumps(r) + "\n" for r in yesterday[half:]), encoding="utf-8"
    )
    (HERE / "today" / "customers.jsonl").write_text(
        "".join(line + "\n" for line in today_lines), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
