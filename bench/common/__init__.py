"""Shared bench tools: the snapshot generator (`generate`) and the process meter (`measure`)."""
