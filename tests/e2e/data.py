"""Snapshots for the local pipeline and the end-to-end tests: seeded, reproducible.

    yesterday, today = sample_snapshots()            # libs/diffcore/samples (None if missing)
    base = generate_snapshot(120, seed=1)            # nested customer records, one JSON per line
    nxt = evolve(base, seed=2, run_date="2026-11-25", inserts=10, updates=20, deletes=5)

`evolve` derives the next day's snapshot from a day's lines: it deletes, updates and inserts
records (chosen by the seed), keeps every untouched line byte for byte, and with
`schema_change=True` adds a nested field (`preferences.channel`), changes a field's type
(`active`: boolean -> string on updated records) and drops the fields named in `drop_fields`.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

SAMPLES = Path("libs") / "diffcore" / "samples"


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _repo_roots() -> list[Path]:
    here = Path(__file__).resolve()
    starts = [Path.cwd().resolve(), here.parent]
    out = []
    for start in starts:
        out.extend([start, *start.parents])
    return out


def samples_folder() -> Path | None:
    """`libs/diffcore/samples` of this checkout (looked up from the working directory, then from
    this file), or None."""
    for folder in _repo_roots():
        candidate = folder / SAMPLES
        if (candidate / "yesterday").is_dir() and (candidate / "today").is_dir():
            return candidate
    return None


def read_folder(folder: Path) -> dict[str, bytes]:
    """The snapshot files of a folder: name -> bytes (skips `_*` and `.*` names)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(("_", "."))
    }


def sample_snapshots() -> tuple[dict[str, bytes], dict[str, bytes]] | None:
    """(yesterday, today) of the bundled samples, or None when they are not in this checkout."""
    folder = samples_folder()
    if folder is None:
        return None
    return read_folder(folder / "yesterday"), read_folder(folder / "today")


def lines_of(files: dict[str, bytes]) -> list[str]:
    """All non-blank lines of a snapshot's files, in name order."""
    out: list[str] = []
    for name in sorted(files):
        out.extend(line for line in files[name].decode("utf-8").splitlines() if line.strip())
    return out


def as_files(lines: list[str], name: str = "snapshot.jsonl") -> dict[str, bytes]:
    return {name: "".join(f"{line}\n" for line in lines).encode("utf-8")}


# ------------------------------------------------------------------------------ generation

_FIRST = ["Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabi", "Hugo", "Iara", "Zoë"]
_CITIES = [("São Paulo", "BR"), ("Lisboa", "PT"), ("Porto", "PT"), ("Recife", "BR")]
_TAGS = ["vip", "b2b", "newsletter", "gift"]


def customer(rng: random.Random, i: int) -> dict[str, Any]:
    city, country = rng.choice(_CITIES)
    first = rng.choice(_FIRST)
    record: dict[str, Any] = {
        "id": i,
        "name": f"{first} {i}",
        "email": f"{first.lower()}{i}@example.com",
        "active": rng.random() < 0.8,
        "score": round(rng.uniform(0, 100), 2),
        "visits": 9007199254740993 + i,  # beyond 2**53: must stay exact end to end
        "address": {"city": city, "country": country, "geo": {"lat": rng.randrange(-30, 0)}},
        "tags": sorted(rng.sample(_TAGS, rng.randrange(0, 3))),
        "updated_at": "2026-11-24T03:00:00Z",
    }
    if i % 7 == 0:
        record["legacy"] = f"L{i:05d}"
    return record


def generate_snapshot(n: int, seed: int, start: int = 1) -> list[str]:
    """`n` nested customer records with ids `start..start+n-1`, one JSON object per line."""
    rng = random.Random(seed)
    return [dumps(customer(rng, i)) for i in range(start, start + n)]


def evolve(
    lines: list[str],
    seed: int,
    run_date: str,
    *,
    inserts: int,
    updates: int,
    deletes: int,
    schema_change: bool = False,
    drop_fields: tuple[str, ...] = ("legacy", "legacy_code"),
) -> list[str]:
    """The next day's snapshot (see the module docstring). Records are keyed by `id`."""
    rng = random.Random(seed)
    records = [json.loads(line) for line in lines]
    ids = [r["id"] for r in records]
    deleted = set(rng.sample(ids, deletes))
    remaining = [i for i in ids if i not in deleted]
    updated = set(rng.sample(remaining, updates))
    stamp = f"{run_date}T03:00:00Z"
    out: list[str] = []
    for line, record in zip(lines, records, strict=True):
        i = record["id"]
        if i in deleted:
            continue
        dropped = schema_change and any(f in record for f in drop_fields)
        if i not in updated and not dropped:
            out.append(line)  # untouched: the very same bytes
            continue
        new = copy.deepcopy(record)
        for f in drop_fields if schema_change else ():
            new.pop(f, None)
        if i in updated:
            _mutate(rng, new)
            new["updated_at"] = stamp
            if schema_change:
                new["preferences"] = {"channel": rng.choice(["email", "sms", "push"])}
                if isinstance(new.get("active"), bool):
                    new["active"] = "yes" if new["active"] else "no"
        out.append(dumps(new))
    next_id = max(ids) + 1
    for n in range(inserts):
        template = copy.deepcopy(rng.choice(records))
        template["id"] = next_id + n
        template["name"] = f"New customer {next_id + n}"
        if "email" in template:
            template["email"] = f"new{next_id + n}@example.com"
        for f in drop_fields if schema_change else ():
            template.pop(f, None)
        template["updated_at"] = stamp
        if schema_change:
            template["preferences"] = {"channel": "email"}
        out.append(dumps(template))
    return out


def _mutate(rng: random.Random, record: dict[str, Any]) -> None:
    """One visible change besides `updated_at`: a nested field, an array, or a scalar."""
    choice = rng.randrange(3)
    address = record.get("address")
    if choice == 0 and isinstance(address, dict):
        city, country = rng.choice([c for c in _CITIES if c[0] != address.get("city")])
        address["city"], address["country"] = city, country
    elif choice == 1 and isinstance(record.get("tags"), list):
        record["tags"] = [*record["tags"], "updated"]
    else:
        record["name"] = f"{record.get('name', '')} (renamed)"
