from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffcore import childpython, cli, layout

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample_diff(out: str) -> list[str]:
    """`diff` of the bundled samples (key `id`) into `out`: the README's main job."""
    return ["diff", str(SAMPLES / "yesterday"), str(SAMPLES / "today"), "--key", "id", "--out", out]


def _write(folder: Path, lines: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.jsonl").write_text("".join(line + "\n" for line in lines))
    return str(folder)


def test_samples_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            *sample_diff(str(tmp_path)),
            "--run-date",
            "2026-11-25",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for text in (
        "inserted (c)",
        "updated (u)",
        "deleted (d)",
        "unchanged",
        "most-changed fields",
        "schema drift",
        "loyalty.tier",
        "legacy_code",
        "phone",
        "records/s",
        "part-00000.jsonl",
        "_manifest.json",
    ):
        assert text in out, text
    assert (tmp_path / "2026-11-25" / layout.MANIFEST_NAME).exists()


def test_json_summary_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.html"
    code = cli.main(
        [
            *sample_diff(str(tmp_path / "out")),
            "--run-date",
            "2026-11-25",
            "--json",
            "--html",
            str(report),
            "--gzip",
            "--max-records-per-file",
            "20",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "ok"
    assert summary["counts"] == {
        "c": 12,
        "u": 51,
        "d": 9,
        "unchanged": 240,
        "bad_records": 0,
        "changes": 72,
    }
    assert summary["schema_drift"]["added"] == ["loyalty.tier"]
    assert summary["schema_drift"]["removed"] == ["legacy_code"]
    assert summary["schema_drift"]["type_changed"] == [
        {"path": "phone", "before": ["number"], "after": ["number", "string"]}
    ]
    assert [f["records"] for f in summary["files"]] == [20, 20, 20, 12]
    assert all(f["name"].endswith(".jsonl.gz") for f in summary["files"])
    assert summary["changed_fields"]["updated_at"] == 51
    html = report.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert 'class="bar"' in html and 'class="changed"' in html and "loyalty.tier" in html
    assert html.count('class="card op-u"') == 12


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            *sample_diff(str(tmp_path)),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    "before,after,extra,code,cls",
    [
        (['{"id":1}', '{"id":2,'], ['{"id":1}'], [], 3, "malformed_json"),
        (['{"id":1}', "[]"], ['{"id":1}'], [], 4, "not_an_object"),
        (['{"id":1}'], ['{"x":1}'], [], 5, "missing_key"),
        (['{"id":1}', '{"id":1}'], ['{"id":1}'], [], 6, "duplicate_key"),
        ([], ['{"id":1}'], [], 7, "empty_snapshot"),
        (['{"id":1}'], ['{"id":1}'], ["--run-date", "2026-02-30"], 2, "config_error"),
        (['{"id":1}'], ['{"id":1}'], ["--allow-empty", "sideways"], 2, "config_error"),
        (['{"id":1}'], ['{"id":1}'], ["--ignore", "id"], 2, "config_error"),
    ],
)
def test_exit_codes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    before: list[str],
    after: list[str],
    extra: list[str],
    code: int,
    cls: str,
) -> None:
    b = _write(tmp_path / "b", before)
    a = _write(tmp_path / "a", after)
    got = cli.main(["diff", b, a, "--key", "id", "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert got == code
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"diffcore: error: {cls}:"), err
    if code in (3, 4, 5, 6):
        assert "a.jsonl" in lines[0] and "line" in lines[0]


def test_json_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _write(tmp_path / "b", ['{"id":1}', "nope"])
    a = _write(tmp_path / "a", ['{"id":1}'])
    assert cli.main(["diff", b, a, "--key", "id", "--out", str(tmp_path / "o"), "--json"]) == 3
    obj = json.loads(capsys.readouterr().out)
    assert obj["status"] == "error" and obj["error"] == "malformed_json" and obj["line"] == 2


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diff", "a"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    assert cli.main(["diff", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--key",
        "--out",
        "--run-date",
        "--ignore",
        "--bad-records",
        "--allow-empty",
        "--gzip",
        "--max-records-per-file",
        "--max-bytes-per-file",
        "--json",
        "--html",
        "--quiet",
        "examples:",
        "exit codes",
    ):
        assert option in out, option


def test_byte_sizes() -> None:
    assert cli._byte_size("128MiB") == 128 * 1024 * 1024
    assert cli._byte_size("64MB") == 64_000_000
    assert cli._byte_size("1_000") == 1000
    with pytest.raises(argparse.ArgumentTypeError):
        cli._byte_size("big")


def test_python_dash_m(tmp_path: Path) -> None:
    """`python -m diffcore` runs the CLI (as the bench and the README do)."""
    env_path = str(Path(cli.__file__).resolve().parents[1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcore",
            *sample_diff(str(tmp_path)),
            "--run-date",
            "2026-11-25",
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": ""},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["u"] == 51


def test_polars_path_imports_nothing_of_spark(tmp_path: Path) -> None:
    """`--help` and a Polars diff load neither PySpark nor pandas (the CLI's start-up cost)."""
    script = (
        "import sys; from diffcore.cli import main; "
        f"main(['--help']); main({sample_diff(str(tmp_path))!r} + ['--quiet']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j', 'pandas')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": childpython.pythonpath(), "PATH": ""},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_unexpected_engine_failure_is_a_named_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure no rule foresaw (a dead Spark worker, a bug) is `engine_error`, exit 9, one
    line naming the exception: never a traceback."""

    class Broken:
        name = "broken"

        def run(self, spec: object) -> None:
            raise RuntimeError("Python worker exited unexpectedly (crashed)\n  at org.apache...")

    import diffcore.engines

    monkeypatch.setattr(diffcore.engines, "get_engine", lambda name, **options: Broken())
    monkeypatch.delenv("DIFFCORE_DEBUG", raising=False)
    assert cli.main([*sample_diff(str(tmp_path)), "--json"]) == 9
    captured = capsys.readouterr()
    assert "engine_error: RuntimeError: Python worker exited unexpectedly" in captured.err
    assert "Traceback" not in captured.err
    assert json.loads(captured.out)["error"] == "engine_error"


def test_repeated_key_and_ignore_flags_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--key region --key id` is the composite key (region, id), not `id` alone (a
    duplicate key here); `--ignore a --ignore b,c` ignores all three."""
    before = [
        '{"region":"eu","id":1,"a":1,"b":1,"c":1}',
        '{"region":"us","id":1,"a":1,"b":1,"c":1}',
    ]
    after = [
        '{"region":"eu","id":1,"a":2,"b":2,"c":2}',
        '{"region":"us","id":1,"a":1,"b":1,"c":1,"d":1}',
    ]
    b = _write(tmp_path / "b", before)
    a = _write(tmp_path / "a", after)
    code = cli.main(
        ["diff", b, a, "--key", "region", "--key", "id", "--out", str(tmp_path / "o")]
        + ["--ignore", "a", "--ignore", "b,c", "--json", "--run-date", "2026-11-25"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0, summary
    assert summary["key"] == ["region", "id"]
    assert summary["ignored"] == ["a", "b", "c"]
    assert (summary["counts"]["u"], summary["counts"]["unchanged"]) == (1, 1)


@pytest.mark.parametrize(
    "flags,says",
    [
        (["--key", "id,id"], "key field path given twice: 'id'"),
        (["--key", "id", "--key", " id"], "key field path given twice: 'id'"),
        (["--key", "id", "--key", "x", "--ignore", "x"], "key fields cannot be ignored: ['x']"),
        (["--key", "id", "--ignore", "a", "--ignore", "b,a"], "ignore field path given twice: 'a'"),
    ],
)
def test_path_given_twice_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    b = _write(tmp_path / "b", ['{"id":1,"x":1}'])
    a = _write(tmp_path / "a", ['{"id":1,"x":1}'])
    assert cli.main(["diff", b, a, "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffcore: error: config_error:") and says in err, err
    assert not (tmp_path / "o").exists()


def test_date_templated_locations_resolve_from_the_run_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dated export folders: {yesterday} and {run_date} pick 2026-11-24/ and 2026-11-25/ (a
    third, newer folder that a plain root would mix in is never read); the manifest and the
    summary carry the resolved locations."""
    exports = tmp_path / "exports"
    _write(exports / "2026-11-24", ['{"id":1,"v":1}', '{"id":2,"v":1}'])
    _write(exports / "2026-11-25", ['{"id":1,"v":2}', '{"id":3,"v":1}'])
    _write(exports / "2026-11-26", ['{"id":9,"v":9}'])
    out = tmp_path / "diffs"
    code = cli.main(
        [
            "diff",
            f"{exports}/{{yesterday}}/",
            f"{exports}/{{run_date:%Y-%m-%d}}",
            "--key",
            "id",
            "--out",
            str(out),
            "--run-date",
            "2026-11-25",
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert (summary["counts"]["c"], summary["counts"]["u"], summary["counts"]["d"]) == (1, 1, 1)
    assert summary["inputs"]["before"]["location"] == f"{exports}/2026-11-24/"
    assert summary["inputs"]["after"]["location"] == f"{exports}/2026-11-25"
    manifest = json.loads((out / "2026-11-25" / layout.MANIFEST_NAME).read_text())
    assert manifest["inputs"]["before"]["location"] == f"{exports}/2026-11-24/"
    assert manifest["inputs"]["after"]["location"] == f"{exports}/2026-11-25"
    assert [f["path"] for f in manifest["inputs"]["after"]["files"]] == [
        f"{exports}/2026-11-25/a.jsonl"
    ]
    events = [json.loads(x) for x in (out / "2026-11-25" / "part-00000.jsonl").read_text().split()]
    assert sorted((e["op"], e["key"]["id"]) for e in events) == [("c", 3), ("d", 2), ("u", 1)]


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("x/{today}/", "x/{run_date}/", "BEFORE 'x/{today}/': unknown placeholder {today}"),
        ("x/{yesterday}/", "x/{run_date/", "AFTER 'x/{run_date/': unbalanced '{' at position 2"),
        ("x/{run_date}/", "x/{yesterday}/", "BEFORE 'x/{run_date}/' names a later date than AFTER"),
        ("x/{run_date}/", "x/{run_date}/", "both resolve to 'x/2026-11-25/'"),
    ],
)
def test_bad_location_templates_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: str, after: str, message: str
) -> None:
    args = [
        "diff",
        before,
        after,
        "--key",
        "id",
        "--out",
        str(tmp_path),
        "--run-date",
        "2026-11-25",
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffcore: error: config_error: ") and message in err, err
    assert "\n" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("output", ["summary", "json"])
def test_lone_surrogate_names_print_as_escapes(tmp_path: Path, output: str) -> None:
    """A member name read from `"\\ud800"` (valid JSON, kept as written) reaches the summary's
    most-changed fields and schema drift, the JSON summary and the HTML report as its escape,
    through a real UTF-8 stdout (an unescaped lone surrogate cannot be encoded)."""
    before = _write(tmp_path / "b", ['{"id":1,"\\ud800":1}'])
    after = _write(tmp_path / "a", ['{"id":1,"\\ud800":2,"\\udc00x":"y"}'])
    flag = ["--json"] if output == "json" else []
    proc = subprocess.run(
        [sys.executable, "-m", "diffcore", "diff", before, after, "--key", "id"]
        + ["--out", str(tmp_path / "out"), "--run-date", "2026-11-25"]
        + ["--html", str(tmp_path / "r.html"), *flag],
        capture_output=True,
        encoding="utf-8",
        env={"PYTHONPATH": str(Path(cli.__file__).resolve().parents[1]), "PATH": ""},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\\ud800" in proc.stdout and "\\udc00x" in proc.stdout
    assert "\\udc00x" in (tmp_path / "r.html").read_text(encoding="utf-8")
