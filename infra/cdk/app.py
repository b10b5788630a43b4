#!/usr/bin/env python3
"""CDK app entry of the diffs pipeline.

Runs three ways, with the same result:
* the CDK CLI: `npx cdk synth` / `deploy` in infra/cdk (cdk.json's "app" runs this file; the CLI
  passes the context, `-c key=value`, and the output folder);
* plain Python: `python app.py` from infra/cdk or the repository root (writes ./cdk.out);
* a PEX built by Pants (`pex_binary(entry_point="app.py")`): diffcore and pipeline_infra are
  bundled; relative paths (Glue script, wheel, Docker context) resolve against the repository
  root found from the working directory.
Without the CLI, context comes from cdk.json's "context", then `CDK_CONTEXT_JSON`, then
`-c key=value` arguments (as the CLI's), and `-o DIR` picks the output folder (default ./cdk.out):

    python app.py -c kafka_bootstrap_servers=b-1.example:9096 -c alarm_email=oncall@example.com
    pants run infra/cdk:app -- -c publisher_image_uri=public.ecr.aws/acme/publisher:1.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ensure_import_path() -> None:
    """Make `diffcore` and `pipeline_infra` importable when run from a checkout (the CLI runs
    `python3 app.py` with no PYTHONPATH). A PEX already bundles them."""
    for folder in (HERE, HERE.parent.parent / "libs" / "diffcore"):
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def _cdk_json_context() -> dict:
    """cdk.json's context (the CLI passes it itself; plain Python and PEX runs read it here)."""
    from pipeline_infra.config import find_repo_root

    for candidate in (HERE / "cdk.json", find_repo_root() / "infra" / "cdk" / "cdk.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8")).get("context", {})
    return {}


def _plain_run_context(argv: list[str]) -> tuple[dict, str]:
    parser = argparse.ArgumentParser(description="Synthesize the diffs pipeline (no CDK CLI).")
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context value, as with `cdk -c` (repeatable)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=os.environ.get("CDK_OUTDIR", "cdk.out"),
        help="output folder ($CDK_OUTDIR, else ./cdk.out)",
    )
    args = parser.parse_args(argv)
    context = {**_cdk_json_context(), **json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}")}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"-c expects KEY=VALUE, got {item!r}")
        context[key.strip()] = value
    return context, str(Path(args.output).resolve())


def main(argv: list[str] | None = None) -> int:
    _ensure_import_path()
    from pipeline_infra.config import ConfigError
    from pipeline_infra.stack import build_app

    under_cli = "CDK_CLI_VERSION" in os.environ  # the CLI passes context and outdir itself
    context, outdir = (
        ({}, None) if under_cli else _plain_run_context(sys.argv[1:] if argv is None else argv)
    )
    try:
        app, stack = build_app(context, outdir=outdir)
        assembly = app.synth()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # jsii wraps cdk-nag's ValidationFailed
        if "ValidationFailed" not in str(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not under_cli:
        template = assembly.get_stack_artifact(stack.artifact_id).template
        print(
            f"synthesized {stack.stack_name}: {len(template.get('Resources', {}))} resources "
            f"-> {assembly.directory}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
