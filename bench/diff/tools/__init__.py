"""One script per measured tool. Each runs in its own process (so its peak RSS is its own),
reads `--before` and `--after` (snapshot folders of `*.ndjson`), writes into `--out`, and prints
one JSON line on stdout: the counts it found (`inserted`, `deleted`, `updated`, or null when
the tool computes no diff) and its phases in seconds."""
