"""The AWS Glue job (see main.py and ../README.md)."""
