"""diffcore: the diff contract (v1) as code, and the engines that implement it.

The contract modules (`layout`, `spec`, `errors`, `jsonvalue`, `events`, `manifest`, `s3events`)
import nothing beyond the standard library, so the Glue job and the publisher can use them
without Polars or Spark.
"""

__version__ = "0.1.0"
CONTRACT_VERSION = 1
