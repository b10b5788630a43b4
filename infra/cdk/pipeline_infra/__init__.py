"""CDK constructs of the diffs pipeline (see infra/cdk/README.md)."""
