"""Bench: the publisher vs a bare confluent-kafka produce loop, same lines, same broker.

    PYTHONPATH=libs/diffcore:apps/kafka_publisher:. .venv/bin/python bench/publisher/run.py

1. Generates N change events (default 1,000,000, ~400 bytes each, c/u/d cycling) as a day's diff
   output in a LOCAL folder (part files of 100,000 events + manifest; `--gzip` for .jsonl.gz),
   reused across runs when the parameters match. The publisher reads it as DIFFS_LOCATION.
2. Starts a Tansu broker on loopback (tests.support.services).
3. Runs, rotating the order every round, `--repeat` times each, every run in its own process
   and to a fresh topic:
   - publisher, once per `--workers` value (default 1 and 2: `PUBLISH_WORKERS`):
     `kafka_publisher.main` (manifest, streaming read, parse, key, headers, produce, flush +
     delivery check per file, checkpoints; with N workers, N processes with a producer each);
     rate = messages / the run's own duration (from its "done" log line);
   - bare loop: the same lines, keys and headers loaded into memory first (not timed), then a
     plain `produce()` loop + `flush()` with the same producer configuration (the publisher's
     `Config.producer_config()` plus its error-only delivery callback).
   Peak RSS is each process's own high-water mark (`VmHWM`; `ru_maxrss` is not used because
   Linux carries it over across exec from the forking parent); with workers, the parent's and
   the largest worker's are shown.
4. Prints a Markdown table: median messages/s, min/max, peak RSS, the machine's CPU busy share
   during the runs (/proc/stat, all cores: the publisher's whole process; the bare loop's timed
   loop only), ratio to the bare loop; and the load average at the start.
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
from datetime import UTC, datetime

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
def cpu():  # machine-wide (total, idle) jiffies, read outside the timed loop
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
cpu0 = cpu()
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
cpu1 = cpu()
busy = 1 - (cpu1[1] - cpu0[1]) / max(1, cpu1[0] - cpu0[0])
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"messages": n, "failed": failed, "duration_s": took, "rss_kb": hwm, "busy": busy}))
"""

PUBLISHER = r"""
import os, sys
from kafka_publisher import parallel
from kafka_publisher.main import main

def hwm_kb():
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))

# A worker reports its own peak RSS just before it exits (os._exit skips atexit handlers).
_worker_main = parallel._worker_main
def _measured_worker(*args):
    real_exit = os._exit
    def exit_with_rss(code):
        print("WORKER_RSS_KB", hwm_kb(), file=sys.stderr, flush=True)
        real_exit(code)
    os._exit = exit_with_rss
    _worker_main(*args)
parallel._worker_main = _measured_worker

code = main(["--run-date", sys.argv[1]])
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's over across exec).
print("RSS_KB", hwm_kb(), file=sys.stderr)
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


def _cpu() -> tuple[int, int]:
    """Machine-wide jiffies from /proc/stat: (total, idle + iowait)."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def _busy(start: tuple[int, int], end: tuple[int, int]) -> float:
    """Share of all cores busy between two `_cpu()` readings."""
    return 1 - (end[1] - start[1]) / max(1, end[0] - start[0])


def machine_busy(seconds: float = 3.0) -> float:
    """Share of all cores busy over `seconds`: a quiet machine reads near 0 right away, whereas
    the load average lags a previous job by minutes."""
    start = _cpu()
    time.sleep(seconds)
    return _busy(start, _cpu())


def _env(bootstrap: str, topic: str, diffs: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") and k != "PUBLISH_WORKERS"
    }
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


def run_publisher(bootstrap: str, topic: str, diffs: str, workers: int) -> dict:
    shutil.rmtree(os.path.join(diffs, "_published"), ignore_errors=True)
    cpu0 = _cpu()
    proc = subprocess.run(
        [sys.executable, "-c", PUBLISHER, RUN_DATE],
        env={**_env(bootstrap, topic, diffs), "PUBLISH_WORKERS": str(workers)},
        capture_output=True,
        text=True,
        check=False,
    )
    cpu1 = _cpu()
    if proc.returncode != 0:
        raise SystemExit(
            f"publisher failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    done = next(json.loads(x) for x in proc.stdout.splitlines() if '"msg": "done"' in x)
    rss = int(next(x for x in proc.stderr.splitlines() if x.startswith("RSS_KB")).split()[1])
    worker_rss = [
        int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("WORKER_RSS_KB")
    ]
    return {
        "messages": done["messages"],
        "duration_s": done["duration_s"],
        "rss_kb": rss,
        "worker_rss_kb": max(worker_rss, default=0),
        "failed": done["failed"],
        # the whole process (interpreter start-up included) against its duration_s: close
        "busy": _busy(cpu0, cpu1),
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
        "--workers",
        default="1,2",
        help="PUBLISH_WORKERS values to run the publisher with, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="consume the first run of each publisher variant and count",
    )
    args = parser.parse_args()
    worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    load_at_start = os.getloadavg()
    busy_at_start = machine_busy()
    started_at = datetime.now(UTC)

    generate(args.data_dir, args.events, args.gzip, args.payload_bytes)
    sizes = [
        os.path.getsize(os.path.join(args.data_dir, RUN_DATE, f))
        for f in os.listdir(os.path.join(args.data_dir, RUN_DATE))
    ]

    def label(workers: int) -> str:
        return f"publisher ({workers} worker{'s' if workers > 1 else ''})"

    runners = {label(n): n for n in worker_counts}
    runners["bare loop"] = 0
    names = list(runners)
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tansu_broker() as bootstrap:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for round_no in range(args.repeat):
            shift = round_no % len(names)  # every runner goes first in some round
            for name in names[shift:] + names[:shift]:
                topic = f"bench-{uuid.uuid4().hex[:8]}"
                create_topics(bootstrap, {topic: args.partitions})
                if runners[name]:
                    result = run_publisher(bootstrap, topic, args.data_dir, runners[name])
                else:
                    result = run_bare(bootstrap, topic, args.data_dir)
                result["rate"] = result["messages"] / result["duration_s"]
                results[name].append(result)
                print(
                    f"round {round_no + 1} {name}: {result['rate']:,.0f} msg/s, "
                    f"{result['messages']} messages, CPU busy {result['busy']:.0%}, "
                    f"peak RSS {result['rss_kb'] / 1024:.0f} MiB"
                    + (
                        f" (largest worker {result['worker_rss_kb'] / 1024:.0f} MiB)"
                        if result.get("worker_rss_kb")
                        else ""
                    ),
                    file=sys.stderr,
                )
                if args.verify and runners[name] and round_no == 0:
                    got = count_messages(bootstrap, topic, result["messages"])
                    print(f"verified {name}: consumed {got} messages", file=sys.stderr)
                    assert got == result["messages"] == args.events, got
                admin.delete_topics([topic], operation_timeout=30)[topic].result()

    medians = {name: statistics.median(r["rate"] for r in results[name]) for name in names}
    bare = medians["bare loop"]
    cpu = os.cpu_count()
    print()
    print(
        f"{started_at.strftime('%Y-%m-%d %H:%M')} UTC · load average at start "
        f"{load_at_start[0]:.2f} / {load_at_start[1]:.2f} / {load_at_start[2]:.2f}, "
        f"CPU busy {busy_at_start:.0%} over 3 s before the first run · "
        f"{platform.system()} {platform.machine()} · {cpu} cores · "
        f"Python {platform.python_version()} · {args.events:,} events, "
        f"{sum(sizes) / 1e6:,.0f} MB of {'.jsonl.gz' if args.gzip else '.jsonl'} in "
        f"{len(sizes) - 1} files, {args.partitions} partitions, Tansu on loopback, "
        f"{args.repeat} runs each"
    )
    print()
    print("| runner | median msg/s | min–max msg/s | peak RSS | CPU busy | vs bare loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        rates = [r["rate"] for r in results[name]]
        rss = max(r["rss_kb"] for r in results[name]) / 1024
        worker_rss = max(r.get("worker_rss_kb", 0) for r in results[name]) / 1024
        rss_text = f"{rss:,.0f} MiB" + (
            f" + {runners[name]} × ≤{worker_rss:,.0f} MiB" if worker_rss else ""
        )
        print(
            f"| {name} | {medians[name]:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
            f"{rss_text} | {statistics.median(r['busy'] for r in results[name]):.0%} | "
            f"{medians[name] / bare:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
