"""Bench: the publisher vs a bare confluent-kafka produce loop, same lines, same broker.

    PYTHONPATH=libs/diffcore:apps/kafka_publisher:. .venv/bin/python bench/publisher/run.py

1. Generates N change events (default 1,000,000, ~400 bytes each, c/u/d cycling) as a day's diff
   output in a LOCAL folder (part files of 100,000 events + manifest; `--gzip` for .jsonl.gz),
   reused across runs when the parameters match. The publisher reads it as DIFFS_LOCATION.
2. Starts a Tansu broker on loopback (tests.support.services).
3. Runs, alternating, `--repeat` times each, every run in its own process and to a fresh topic:
   - publisher: `kafka_publisher.main` (manifest, streaming read, parse, key, headers, produce,
     flush + delivery check per file, checkpoints); rate = messages / the run's own duration
     (from its "done" log line);
   - bare loop: the same lines, keys and headers loaded into memory first (not timed), then a
     plain `produce()` loop + `flush()` with the same producer configuration (the publisher's
     `Config.producer_config()` plus its error-only delivery callback).
   Peak RSS is each process's own high-water mark (`VmHWM`; `ru_maxrss` is not used because
   Linux carries it over across exec from the forking parent).
4. Prints a Markdown table: median messages/s, min/max, peak RSS, ratio publisher/bare.
Not a test; `pants test` does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date

from confluent_kafka.admin import AdminClient

from tests.support.diffs import iter_events, write_day
from tests.support.services import create_topics, tansu_broker

RUN_DATE = "2026-11-25"

BARE_LOOP = r"""
import json, os, sys, time, gzip
from confluent_kafka import Producer
from diffcore import layout, store
from diffcore.manifest import Manifest
from kafka_publisher.config import load_config
from kafka_publisher.reader import parse_line

diffs, run_date, topic = sys.argv[1:4]
config = load_config(os.environ)
manifest = Manifest.from_json(store.read_bytes(store.join(layout.run_folder(diffs, run_date), layout.MANIFEST_NAME)))
items = []
for f in manifest.files:
    body = store.read_bytes(store.join(layout.run_folder(diffs, run_date), f.name))
    if f.name.endswith(".gz"):
        body = gzip.decompress(body)
    src = f.name.encode()
    for line in body.split(b"\n"):
        if line:
            op, key, eid = parse_line(line, run_date)
            items.append((line, key, [("op", op.encode()), ("run_date", run_date.encode()), ("event_id", eid), ("source_file", src)]))
failed = 0
def on_delivery(err, msg):
    global failed
    if err is not None:
        failed += 1
conf = config.producer_config()
conf["delivery.report.only.error"] = True
conf["on_delivery"] = on_delivery
producer = Producer(conf)
producer.list_topics(topic, timeout=10)
produce, poll = producer.produce, producer.poll
start = time.monotonic()
n = 0
for value, key, headers in items:
    while True:
        try:
            produce(topic, value, key, headers=headers)
            break
        except BufferError:
            poll(0.05)
    n += 1
    if n % 1000 == 0:
        poll(0)
while len(producer):
    producer.flush(1.0)
took = time.monotonic() - start
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"messages": n, "failed": failed, "duration_s": took, "rss_kb": hwm}))
"""

PUBLISHER = r"""
import sys
from kafka_publisher.main import main
code = main(["--run-date", sys.argv[1]])
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's over across exec).
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print("RSS_KB", hwm, file=sys.stderr)
sys.exit(code)
"""


def count_messages(bootstrap: str, topic: str, expected: int) -> int:
    """Consume a topic from the start and count (without keeping the messages)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"count-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        count, idle_since = 0, time.monotonic()
        while time.monotonic() - idle_since < (2.0 if count >= expected else 60.0):
            batch = consumer.consume(10_000, timeout=0.5)
            if batch:
                count += sum(1 for m in batch if m.error() is None)
                idle_since = time.monotonic()
        return count
    finally:
        consumer.close()


def generate(folder: str, n: int, gzip: bool, payload: int) -> dict:
    marker = os.path.join(folder, "bench-params.json")
    params = {"n": n, "gzip": gzip, "payload": payload, "run_date": RUN_DATE}
    if os.path.exists(marker) and json.load(open(marker)) == params:
        return params
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    started = time.monotonic()
    write_day(folder, RUN_DATE, iter_events(RUN_DATE, n, payload_bytes=payload), gzip=gzip)
    with open(marker, "w") as fh:
        json.dump(params, fh)
    print(
        f"generated {n} events in {time.monotonic() - started:.1f}s into {folder}", file=sys.stderr
    )
    return params


def _env(bootstrap: str, topic: str, diffs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(sys.path),
            "DIFFS_LOCATION": diffs,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic,
            "LOG_LEVEL": "INFO",
        }
    )
    return env


def run_publisher(bootstrap: str, topic: str, diffs: str) -> dict:
    shutil.rmtree(os.path.join(diffs, "_published"), ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-c", PUBLISHER, RUN_DATE],
        env=_env(bootstrap, topic, diffs),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"publisher failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    done = next(json.loads(x) for x in proc.stdout.splitlines() if '"msg": "done"' in x)
    rss = int(next(x for x in proc.stderr.splitlines() if x.startswith("RSS_KB")).split()[1])
    return {
        "messages": done["messages"],
        "duration_s": done["duration_s"],
        "rss_kb": rss,
        "failed": done["failed"],
    }


def run_bare(bootstrap: str, topic: str, diffs: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, diffs, RUN_DATE, topic],
        env=_env(bootstrap, topic, diffs),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--payload-bytes", type=int, default=400, help="approximate bytes per event line"
    )
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz data files")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--data-dir", default=os.path.join(tempfile.gettempdir(), "bench-publisher-diffs")
    )
    parser.add_argument(
        "--verify", action="store_true", help="consume the first publisher run and count"
    )
    args = parser.parse_args()

    generate(args.data_dir, args.events, args.gzip, args.payload_bytes)
    sizes = [
        os.path.getsize(os.path.join(args.data_dir, RUN_DATE, f))
        for f in os.listdir(os.path.join(args.data_dir, RUN_DATE))
    ]
    results: dict[str, list[dict]] = {"publisher": [], "bare loop": []}
    with tansu_broker() as bootstrap:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for round_no in range(args.repeat):
            order = ["publisher", "bare loop"] if round_no % 2 == 0 else ["bare loop", "publisher"]
            for name in order:
                topic = f"bench-{uuid.uuid4().hex[:8]}"
                create_topics(bootstrap, {topic: args.partitions})
                runner = run_publisher if name == "publisher" else run_bare
                result = runner(bootstrap, topic, args.data_dir)
                result["rate"] = result["messages"] / result["duration_s"]
                results[name].append(result)
                print(
                    f"round {round_no + 1} {name}: {result['rate']:,.0f} msg/s, {result['messages']} messages, "
                    f"peak RSS {result['rss_kb'] / 1024:.0f} MiB",
                    file=sys.stderr,
                )
                if args.verify and name == "publisher" and round_no == 0:
                    got = count_messages(bootstrap, topic, result["messages"])
                    print(f"verified: consumed {got} messages", file=sys.stderr)
                    assert got == result["messages"], got
                admin.delete_topics([topic], operation_timeout=30)[topic].result()

    pub = statistics.median(r["rate"] for r in results["publisher"])
    bare = statistics.median(r["rate"] for r in results["bare loop"])
    cpu = os.cpu_count()
    print()
    print(
        f"{date.today().isoformat()} · {platform.system()} {platform.machine()} · {cpu} cores · "
        f"Python {platform.python_version()} · {args.events:,} events, "
        f"{sum(sizes) / 1e6:,.0f} MB of {'.jsonl.gz' if args.gzip else '.jsonl'} in {len(sizes) - 1} files, "
        f"{args.partitions} partitions, Tansu on loopback"
    )
    print()
    print("| runner | median msg/s | min–max msg/s | peak RSS | vs bare loop |")
    print("|---|---:|---:|---:|---:|")
    for name, median in (("publisher", pub), ("bare loop", bare)):
        rates = [r["rate"] for r in results[name]]
        rss = max(r["rss_kb"] for r in results[name]) / 1024
        print(
            f"| {name} | {median:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | {rss:,.0f} MiB | {median / bare:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
