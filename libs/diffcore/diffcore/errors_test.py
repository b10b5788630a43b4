from __future__ import annotations

from diffcore.errors import DiffError, ErrorClass

SPARK_TASK_DIED_OF_IO = """
  An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/x/pyspark/worker.py", line 1231, in main
  File "/x/diffcore/store.py", line 214, in open_read
diffcore.store.StoreError: cannot read s3://exports/a.jsonl: access denied (AccessDenied: no)
"""

SPARK_TASK_DIED_OF_A_BUG = """
  An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/x/pyspark/sql/pandas/types.py", line 65, in to_arrow_type
ModuleNotFoundError: No module named 'pyarrow'
"""


class PythonException(Exception):
    """Stands in for pyspark's: only its text matters here."""


def test_unexpected_failures_get_a_class_and_the_line_naming_the_cause() -> None:
    io = DiffError.from_unexpected(PythonException(SPARK_TASK_DIED_OF_IO))
    assert io.error_class is ErrorClass.IO_ERROR and io.exit_code == 8
    assert io.message.startswith("diffcore.store.StoreError: cannot read s3://exports/a.jsonl")
    bug = DiffError.from_unexpected(PythonException(SPARK_TASK_DIED_OF_A_BUG))
    assert bug.error_class is ErrorClass.ENGINE_ERROR and bug.exit_code == 9
    assert bug.message == "PythonException: ModuleNotFoundError: No module named 'pyarrow'"
    assert DiffError.from_unexpected(PermissionError(13, "denied")).exit_code == 8
    plain = DiffError.from_unexpected(RuntimeError("boom"))
    assert plain.describe() == "engine_error: RuntimeError: boom"
