"""app.py (infra/cdk/app.py), the entry the CDK CLI (cdk.json) and the Pants PEX run: outside
the CLI it takes `-c key=value`, synthesizes into ./cdk.out, and turns a bad context into exit
code 2 with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import app

from pipeline_infra.testing import fixture_paths


def test_plain_run_synthesizes_into_cdk_out(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDK_OUTDIR", raising=False)
    monkeypatch.delenv("CDK_CLI_VERSION", raising=False)
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps(fixture_paths()))
    assert app.main(["-c", "kafka_bootstrap_servers=broker.example.com:9096"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("synthesized DiffsPipeline: ")
    template = json.loads((tmp_path / "cdk.out" / "DiffsPipeline.template.json").read_text())
    env = {
        e["Name"]: e["Value"]
        for e in template["Resources"][
            next(
                k
                for k, v in template["Resources"].items()
                if v["Type"] == "AWS::ECS::TaskDefinition"
            )
        ]["Properties"]["ContainerDefinitions"][0]["Environment"]
    }
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "broker.example.com:9096"


def test_bad_context_exits_2_with_the_reason(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDK_OUTDIR", raising=False)
    monkeypatch.delenv("CDK_CLI_VERSION", raising=False)
    assert app.main(["-c", "glue_time=03:00"]) == 2
    assert "glue_time=03:00 must precede publisher_time=02:00" in capsys.readouterr().err


def test_missing_glue_script_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDK_OUTDIR", raising=False)
    monkeypatch.delenv("CDK_CLI_VERSION", raising=False)
    assert app.main(["-c", f"glue_script_path={tmp_path / 'nope.py'}"]) == 2
    assert "glue_script_path" in capsys.readouterr().err
