"""The `diffcore` command line: diff two JSON snapshots into a run folder, and say what changed.

    diffcore diff BEFORE AFTER --key id --out DIR [--run-date YYYY-MM-DD] [options]

`main(argv) -> int` returns the exit code (docs/decisions.md: 0 done, 2 usage/configuration,
3-7 bad input by class, 8 I/O). Polars and rich are imported only when needed.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from diffcore import __version__, layout
from diffcore.errors import EXIT_CODES, DiffError, ErrorClass

if TYPE_CHECKING:  # annotations only: `--help` does not pay for the manifest's dataclasses
    from diffcore.manifest import Manifest

# store, spec and the engines are imported where a run needs them: `--help` answers without.

PROG = "diffcore"

EPILOG = """\
examples:
  # the bundled samples: yesterday vs today, keyed by id
  diffcore diff libs/diffcore/samples/yesterday libs/diffcore/samples/today \\
      --key id --out /tmp/diffs --run-date 2026-11-25

  # S3 snapshots, composite key, ignore volatile fields, gzip parts, an HTML report
  diffcore diff s3://exports/2026-11-24/ s3://exports/2026-11-25/ --key tenant,customer.id \\
      --out s3://diffs --ignore updated_at,meta.etag --gzip --html report.html

  # dated export folders: the placeholders are resolved from the run date
  diffcore diff 's3://exports/{yesterday}/' 's3://exports/{run_date}/' --key id \\
      --out s3://diffs --run-date 2026-11-25     # reads exports/2026-11-24/ and 2026-11-25/

  # the first day of a pipeline: nothing before, every record is an insert
  diffcore diff s3://exports/none/ s3://exports/2026-11-25/ --key id --out /tmp/diffs \\
      --allow-empty before

  # set bad records aside in <out>/<date>/_bad_records.ndjson instead of failing
  diffcore diff 'snap/2026-11-24/*.jsonl.gz' 'snap/2026-11-25/*.jsonl.gz' --key id \\
      --out /tmp/diffs --bad-records quarantine --json

exit codes: 0 done, 2 usage or configuration error, 3 malformed_json, 4 not_an_object,
5 missing_key, 6 duplicate_key, 7 empty_snapshot, 8 I/O error, 9 engine error,
10 concurrent_run (another run is writing the same date), 11 event_too_large.
"""

DIFF_DESCRIPTION = """\
Compare two JSON snapshots record by record, by key, and write the changes as change events
(one JSON line per inserted "c", updated "u" or deleted "d" key) into OUT/RUN_DATE/part-NNNNN.jsonl,
then OUT/RUN_DATE/_manifest.json, which marks the run complete.

A snapshot is a file, a directory (every *.json, *.jsonl, *.ndjson, optionally .gz, names
starting with _ or . skipped), a glob, or an s3:// prefix. Files hold one JSON object per line,
or one JSON array of objects. Records are equal when their non-null leaves are equal
(member order, null vs absent, 1 vs 1.0 do not matter; "1" vs 1 does).
"""


# ---------------------------------------------------------------------------------------------
# Arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _byte_size(text: str) -> int:
    """`134217728`, `128MiB`, `64MB`, `1G` ..."""
    units = {
        "k": 1000,
        "m": 1000**2,
        "g": 1000**3,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "kib": 1024,
        "mib": 1024**2,
        "gib": 1024**3,
    }
    t = text.strip().lower().replace("_", "")
    number = t.rstrip("kmgib")
    unit = t[len(number) :]
    try:
        value = int(float(number) * (units[unit] if unit else 1))
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 134217728, 128MiB)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Diff two JSON snapshots by key into change events (the diffs pipeline).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    d = sub.add_parser(
        "diff",
        help="diff BEFORE against AFTER into OUT/RUN_DATE/",
        description=DIFF_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "before",
        metavar="BEFORE",
        help="yesterday's snapshot: file, directory, glob or s3:// prefix "
        "(e.g. s3://exports/2026-11-24/), or a template resolved from the run date: "
        "{yesterday} (RUN_DATE - 1 day) and {run_date}, both YYYY-MM-DD, or with a format "
        "such as {yesterday:%%Y/%%m/%%d} (%%Y %%m %%d %%y %%j); {{ and }} are literal braces "
        "(e.g. 's3://exports/{yesterday}/')",
    )
    d.add_argument(
        "after",
        metavar="AFTER",
        help="today's snapshot, same forms as BEFORE (e.g. 's3://exports/{run_date}/')",
    )
    d.add_argument(
        "--key",
        required=True,
        action="append",
        metavar="PATH[,PATH...]",
        help="the key: one or more field paths, comma separated or repeated, in order; a "
        "dotted path names a nested field (e.g. --key id, --key tenant,customer.id, "
        "--key region --key id); a path given twice is an error",
    )
    d.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the diffs location (local folder or s3://bucket/prefix); the run writes "
        "DIR/RUN_DATE/ (e.g. --out s3://diffs)",
    )
    d.add_argument(
        "--run-date",
        default=None,
        metavar="YYYY-MM-DD",
        help="the run date, the output folder's name (default: today, %(default)s "
        "means today's date; e.g. --run-date 2026-11-25)",
    )
    d.add_argument(
        "--ignore",
        action="append",
        default=None,
        metavar="PATH[,PATH...]",
        help="fields left out of the comparison (kept in the payloads), comma separated "
        "or repeated; a path ignores its whole subtree (e.g. --ignore updated_at,meta)",
    )
    d.add_argument(
        "--bad-records",
        choices=("fail", "quarantine"),
        default="fail",
        help="fail: stop at the first malformed line, non-object or missing key "
        "(default); quarantine: write them to RUN_DATE/_bad_records.ndjson and "
        "go on (duplicates still fail)",
    )
    d.add_argument(
        "--allow-empty",
        default="none",
        metavar="{none,before,after,both}",
        help="which side may have no files or records (default none: an empty side "
        "is an error, so a failed export never looks like 'all deleted'; e.g. "
        "--allow-empty before on a pipeline's first day)",
    )
    d.add_argument(
        "--gzip", action="store_true", help="write part-NNNNN.jsonl.gz instead of part-NNNNN.jsonl"
    )
    d.add_argument(
        "--max-records-per-file",
        type=_positive_int,
        default=layout.DEFAULT_MAX_RECORDS_PER_FILE,
        metavar="N",
        help="at most N events per data file (default %(default)s)",
    )
    d.add_argument(
        "--max-bytes-per-file",
        type=_byte_size,
        default=layout.DEFAULT_MAX_BYTES_PER_FILE,
        metavar="N",
        help="a data file stops before N uncompressed bytes (default %(default)s; "
        "suffixes k, M, G, KiB, MiB, GiB accepted, e.g. 64MiB)",
    )
    d.add_argument(
        "--engine",
        choices=("polars", "spark"),
        default="polars",
        help="the engine (default polars; spark needs PySpark and Java)",
    )
    d.add_argument(
        "--json",
        action="store_true",
        help="print a machine-readable JSON summary on stdout instead of the table",
    )
    d.add_argument(
        "--html",
        metavar="REPORT.html",
        default=None,
        help="also write a self-contained HTML report (counts, most-changed fields, "
        "schema drift, sample changes side by side)",
    )
    d.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress display and no summary (errors are still printed)",
    )
    return parser


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A progress display on stderr (rich when available), only for a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._stage: str | None = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._rich = Progress(
                TextColumn("[bold]{task.description:<14}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr),
                transient=True,
            )
            self._rich.__enter__()
        except ImportError:
            self._rich = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
        elif self.enabled and self._stage is not None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            if stage != self._stage:
                if self._task is not None:
                    self._rich.update(self._task, completed=self._rich.tasks[-1].total or 1)
                self._task = self._rich.add_task(stage, total=max(total, 1))
                self._stage = stage
            self._rich.update(self._task, completed=done, total=max(total, 1))
            return
        now = time.monotonic()
        if stage == self._stage and now - self._last < 0.2 and done < total:
            return
        self._stage, self._last = stage, now
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\r{stage:<14} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Summary


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def summary_dict(manifest: Manifest, folder: str, elapsed: float) -> dict[str, Any]:
    """The machine-readable summary (`--json`)."""
    from diffcore import store

    records = manifest.before.records + manifest.after.records
    drift = manifest.schema_drift
    return {
        "status": "ok",
        "run_date": manifest.run_date,
        "engine": {"name": manifest.engine.name, "version": manifest.engine.version},
        "folder": folder,
        "manifest": store.join(folder, layout.MANIFEST_NAME),
        "key": list(manifest.key),
        "ignored": list(manifest.ignored),
        "counts": {
            "c": manifest.counts.c,
            "u": manifest.counts.u,
            "d": manifest.counts.d,
            "unchanged": manifest.counts.unchanged,
            "bad_records": manifest.counts.bad_records,
            "changes": manifest.counts.changes,
        },
        "inputs": {
            side: {"location": s.location, "files": len(s.files), "records": s.records}
            for side, s in (("before", manifest.before), ("after", manifest.after))
        },
        "files": [
            {"name": f.name, "records": f.records, "bytes": f.bytes, "sha256": f.sha256}
            for f in manifest.files
        ],
        "bad_records_file": manifest.bad_records_file,
        "changed_fields": dict(manifest.extra.get("changed_fields", {})),
        "schema_drift": {
            "added": list(drift.added),
            "removed": list(drift.removed),
            "type_changed": [
                {"path": t.path, "before": list(t.before), "after": list(t.after)}
                for t in drift.type_changed
            ],
        },
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(records / elapsed) if elapsed > 0 else None,
    }


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    """The human summary: rich tables when rich is installed, plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(summary, out)
        return
    console = Console(file=out, highlight=False, soft_wrap=True)
    c = summary["counts"]
    ins = summary["inputs"]
    console.print(
        f"[bold]diffcore[/bold] {summary['run_date']}  key {', '.join(summary['key'])}  "
        f"engine {summary['engine']['name']} {summary['engine']['version']}"
    )
    for side in ("before", "after"):
        s = ins[side]
        console.print(
            f"  {side:<6} {s['location']}  ({_plural(s['files'], 'file')}, "
            f"{_plural(s['records'], 'record')})"
        )
    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("change")
    table.add_column("records", justify="right")
    table.add_row("[green]inserted (c)[/green]", f"{c['c']:,}")
    table.add_row("[yellow]updated (u)[/yellow]", f"{c['u']:,}")
    table.add_row("[red]deleted (d)[/red]", f"{c['d']:,}")
    table.add_row("unchanged", f"{c['unchanged']:,}")
    if c["bad_records"]:
        table.add_row("[magenta]bad records (quarantined)[/magenta]", f"{c['bad_records']:,}")
    console.print(table)
    fields = list(summary["changed_fields"].items())[:10]
    if fields:
        top = max(n for _, n in fields)
        ft = Table(title="most-changed fields", show_header=True, header_style="bold")
        ft.add_column("field")
        ft.add_column("updates", justify="right")
        ft.add_column("")
        for name, n in fields:
            ft.add_row(name, f"{n:,}", "█" * max(1, round(20 * n / top)))
        console.print(ft)
    drift = summary["schema_drift"]
    if drift["added"] or drift["removed"] or drift["type_changed"]:
        console.print("[bold]schema drift[/bold]")
        if drift["added"]:
            console.print(f"  [green]added[/green]    {', '.join(drift['added'])}")
        if drift["removed"]:
            console.print(f"  [red]removed[/red]  {', '.join(drift['removed'])}")
        for t in drift["type_changed"]:
            console.print(
                f"  [yellow]type[/yellow]     {t['path']}: {'|'.join(t['before'])} -> "
                f"{'|'.join(t['after'])}"
            )
    else:
        console.print("schema drift: none")
    rate = summary["records_per_s"]
    console.print(f"time {summary['elapsed_s']:.2f} s" + (f", {rate:,} records/s" if rate else ""))
    files = summary["files"]
    console.print(f"output {summary['folder']}/")
    for f in files[:10]:
        console.print(f"  {f['name']}  {f['records']:,} events, {_fmt_bytes(f['bytes'])}")
    if len(files) > 10:
        console.print(f"  ... {len(files) - 10} more data files")
    if summary["bad_records_file"]:
        console.print(f"  {summary['bad_records_file']}  {c['bad_records']:,} bad records")
    console.print(f"  {layout.MANIFEST_NAME}")


def _print_plain(summary: dict[str, Any], out: TextIO) -> None:
    c = summary["counts"]
    w = out.write
    w(f"diffcore {summary['run_date']}  key {', '.join(summary['key'])}\n")
    for side in ("before", "after"):
        s = summary["inputs"][side]
        w(
            f"  {side:<6} {s['location']}  ({_plural(s['files'], 'file')}, "
            f"{_plural(s['records'], 'record')})\n"
        )
    w(f"  inserted (c) {c['c']:>12,}\n  updated (u)  {c['u']:>12,}\n  deleted (d)  {c['d']:>12,}\n")
    w(f"  unchanged    {c['unchanged']:>12,}\n")
    if c["bad_records"]:
        w(f"  bad records  {c['bad_records']:>12,}\n")
    for name, n in list(summary["changed_fields"].items())[:10]:
        w(f"  field {name}: {n:,}\n")
    drift = summary["schema_drift"]
    w(
        f"schema drift: added {drift['added']}, removed {drift['removed']}, "
        f"type changed {[t['path'] for t in drift['type_changed']]}\n"
    )
    w(
        f"time {summary['elapsed_s']:.2f} s\noutput {summary['folder']}/ "
        f"({len(summary['files'])} data files)\n"
    )


# ---------------------------------------------------------------------------------------------
# HTML report


def _sample_events(manifest: Manifest, folder: str, limit: int = 12) -> list[dict[str, Any]]:
    """A sample of events read back from the data files: updates first, then c and d."""
    import gzip

    from diffcore import jsonvalue, store

    wanted = {"u": limit, "c": max(2, limit // 4), "d": max(2, limit // 4)}
    got: dict[str, list[dict[str, Any]]] = {"u": [], "c": [], "d": []}
    for f in manifest.files:
        location = store.join(folder, f.name)
        with store.open_read(location) as raw:
            stream = gzip.GzipFile(fileobj=raw) if f.name.endswith(".gz") else raw
            for line in stream:
                op = line[7:8].decode()
                if op in got and len(got[op]) < wanted[op]:
                    got[op].append(jsonvalue.loads(line))
                if all(len(got[o]) >= wanted[o] for o in got):
                    break
        if all(len(got[o]) >= wanted[o] for o in got):
            break
    return got["u"] + got["c"] + got["d"]


def _value_html(value: Any) -> str:
    from diffcore import jsonvalue  # not at the top: orjson's import is half of --help's time

    return html.escape(jsonvalue.compact_json(value))


def render_html(summary: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    """A self-contained report: inline CSS, no scripts, no external assets."""
    from diffcore import jsonvalue

    esc = html.escape
    c = summary["counts"]
    fields = list(summary["changed_fields"].items())[:20]
    top = max((n for _, n in fields), default=1)
    bars = (
        "".join(
            f'<div class="bar-row"><span class="bar-label">{esc(name)}</span>'
            f'<span class="bar" style="width:{max(0.5, 60 * n / top):.1f}%"></span>'
            f'<span class="bar-n">{n:,}</span></div>'
            for name, n in fields
        )
        or "<p>No updates.</p>"
    )
    drift = summary["schema_drift"]
    drift_rows = (
        "".join(f"<tr><td>added</td><td>{esc(p)}</td><td></td></tr>" for p in drift["added"])
        + "".join(f"<tr><td>removed</td><td>{esc(p)}</td><td></td></tr>" for p in drift["removed"])
        + "".join(
            f"<tr><td>type changed</td><td>{esc(t['path'])}</td>"
            f"<td>{esc('|'.join(t['before']))} &rarr; {esc('|'.join(t['after']))}</td></tr>"
            for t in drift["type_changed"]
        )
    )
    drift_html = (
        f"<table><tr><th>drift</th><th>field</th><th>types</th></tr>{drift_rows}</table>"
        if drift_rows
        else "<p>No schema drift.</p>"
    )
    cards = []
    for ev in samples:
        op = ev["op"]
        before = jsonvalue.leaves(ev["before"]) if isinstance(ev["before"], dict) else {}
        after = jsonvalue.leaves(ev["after"]) if isinstance(ev["after"], dict) else {}
        changed = set(ev.get("changed") or [])
        rows = []
        for path in sorted(before.keys() | after.keys()):
            cls = ' class="changed"' if path in changed else ""
            b = _value_html(before[path]) if path in before else ""
            a = _value_html(after[path]) if path in after else ""
            rows.append(f"<tr{cls}><td>{esc(path)}</td><td>{b}</td><td>{a}</td></tr>")
        label = {"u": "updated", "c": "inserted", "d": "deleted"}[op]
        cards.append(
            f'<div class="card op-{op}"><h3>{label} &middot; key {_value_html(ev["key"])}</h3>'
            f"<table><tr><th>field</th><th>before</th><th>after</th></tr>{''.join(rows)}</table>"
            f"</div>"
        )
    files = "".join(
        f"<tr><td>{esc(f['name'])}</td><td>{f['records']:,}</td><td>{f['bytes']:,}</td>"
        f"<td><code>{esc(f['sha256'][:16])}&hellip;</code></td></tr>"
        for f in summary["files"]
    )
    ins = summary["inputs"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>diffcore {esc(summary['run_date'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
.counts {{ display: flex; gap: 1rem; flex-wrap: wrap; }}
.count {{ border-radius: 8px; padding: .8rem 1.2rem; background: #f3f3f3; min-width: 8rem; }}
.count b {{ display: block; font-size: 1.6rem; }}
.c {{ background: #e3f6e8; }} .u {{ background: #fff4d6; }} .d {{ background: #fde4e4; }}
.bar-row {{ display: flex; align-items: center; gap: .5rem; margin: 2px 0; }}
.bar-label {{ width: 16rem; text-align: right; font-family: monospace; overflow: hidden; }}
.bar {{ display: inline-block; height: 1rem; background: #4a7fd6; border-radius: 3px; }}
.bar-n {{ font-size: .85rem; color: #555; }}
table {{ border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }}
td {{ font-family: monospace; word-break: break-all; }}
tr.changed td {{ background: #fff0b3; font-weight: bold; }}
.card {{ border: 1px solid #ddd; border-radius: 8px; padding: .5rem 1rem; margin: 1rem 0; }}
.card h3 {{ font-size: 1rem; margin: .3rem 0; }}
.op-c {{ border-left: 6px solid #3aa35b; }} .op-u {{ border-left: 6px solid #e0a800; }}
.op-d {{ border-left: 6px solid #d64545; }}
</style></head><body>
<h1>diffcore run {esc(summary['run_date'])}</h1>
<p>key <code>{esc(', '.join(summary['key']))}</code> &middot; engine
{esc(summary['engine']['name'])} {esc(summary['engine']['version'])} &middot;
{summary['elapsed_s']:.2f} s</p>
<p>before <code>{esc(ins['before']['location'])}</code> ({_plural(ins['before']['files'], 'file')},
{ins['before']['records']:,} records)<br>after <code>{esc(ins['after']['location'])}</code>
({_plural(ins['after']['files'], 'file')}, {ins['after']['records']:,} records)</p>
<div class="counts">
<div class="count c">inserted<b>{c['c']:,}</b></div>
<div class="count u">updated<b>{c['u']:,}</b></div>
<div class="count d">deleted<b>{c['d']:,}</b></div>
<div class="count">unchanged<b>{c['unchanged']:,}</b></div>
<div class="count">bad records<b>{c['bad_records']:,}</b></div>
</div>
<h2>Most-changed fields</h2>
{bars}
<h2>Schema drift</h2>
{drift_html}
<h2>Sample of changes</h2>
{''.join(cards) or '<p>No changes.</p>'}
<h2>Output</h2>
<p><code>{esc(summary['folder'])}/</code></p>
<table><tr><th>data file</th><th>events</th><th>bytes</th><th>sha256</th></tr>{files}</table>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# Main


def _printable(value: Any) -> Any:
    """`value` with every lone surrogate (a leaf path or payload read from `"\\ud800"`) as its
    `\\uXXXX` escape: text a terminal, a JSON line and an HTML page can hold (contract §1)."""
    from diffcore.jsonvalue import escape_lone_surrogates

    if isinstance(value, str):
        return escape_lone_surrogates(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def _error_line(exc: DiffError) -> str:
    return f"{PROG}: error: {exc.describe()}"


def _run_diff(args: argparse.Namespace) -> int:
    from diffcore import store
    from diffcore.spec import OutputOptions, RunSpec, parse_allow_empty, parse_paths, today_iso

    progress_enabled = not args.quiet and not args.json and sys.stderr.isatty()
    try:
        from diffcore.locations import resolve_pair

        run_date = args.run_date or today_iso()
        before, after = resolve_pair(args.before, args.after, run_date, ("BEFORE", "AFTER"))
        spec = RunSpec(
            before=before,
            after=after,
            key=parse_paths(args.key),
            out=args.out,
            run_date=run_date,
            ignore=parse_paths(args.ignore),
            bad_records=args.bad_records,
            allow_empty=parse_allow_empty(args.allow_empty),
            output=OutputOptions(
                gzip=args.gzip,
                max_records_per_file=args.max_records_per_file,
                max_bytes_per_file=args.max_bytes_per_file,
            ),
        )
        t0 = time.perf_counter()
        with _Progress(progress_enabled) as progress:
            from diffcore.engines import get_engine

            options = {"progress": progress} if args.engine == "polars" else {}
            engine = get_engine(args.engine, **options)
            result = engine.run(spec)
        elapsed = time.perf_counter() - t0
    except DiffError as exc:
        print(_error_line(exc), file=sys.stderr)
        if args.json:
            print(json.dumps({"status": "error", **exc.to_dict(), "exit_code": exc.exit_code}))
        return exc.exit_code
    except ImportError as exc:
        err = DiffError(ErrorClass.CONFIG_ERROR, f"engine {args.engine!r} is not available: {exc}")
        print(_error_line(err), file=sys.stderr)
        return err.exit_code
    except OSError as exc:
        err = DiffError(ErrorClass.IO_ERROR, str(exc))
        print(_error_line(err), file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # noqa: BLE001 - a named error, never a traceback
        err = DiffError.from_unexpected(exc)
        print(_error_line(err), file=sys.stderr)
        if os.environ.get("DIFFCORE_DEBUG"):
            traceback.print_exc()
        else:
            print(f"{PROG}: set DIFFCORE_DEBUG=1 for the traceback", file=sys.stderr)
        if args.json:
            print(json.dumps({"status": "error", **err.to_dict(), "exit_code": err.exit_code}))
        return err.exit_code
    summary = _printable(summary_dict(result.manifest, result.folder, elapsed))
    if args.html:
        try:
            sample = _printable(_sample_events(result.manifest, result.folder))
            report = render_html(summary, sample)
            store.write_text(args.html, report)
            summary["html"] = args.html
        except OSError as exc:
            err = DiffError(ErrorClass.IO_ERROR, f"cannot write the HTML report {args.html}: {exc}")
            print(_error_line(err), file=sys.stderr)
            return err.exit_code
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    elif not args.quiet:
        print_summary(summary, sys.stdout)
        if args.html:
            print(f"report {args.html}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command == "diff":
        return _run_diff(args)
    parser.print_help()
    return EXIT_CODES[ErrorClass.CONFIG_ERROR]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
