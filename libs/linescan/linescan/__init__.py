"""linescan: one pass of C over NDJSON text that cuts it into lines, says which lines are
certainly valid JSON objects, and cuts out each line's key, without building any Python object
per line.

`scan(text, key_paths)` returns `(lines, line_views, key_views, flags, types, key_data,
bad_utf8)`: the number of lines, two Arrow string-view buffers (16 bytes per line) pointing into
`text` (the keys into `key_data` for composite keys), one flag byte per line (the constants
below), the distinct `(leaf path, kind)` pairs of the lines flagged TYPED (collected once per
distinct shape: member names, nesting, leaf types), and the number of lines that are not UTF-8. The scanner is conservative: where it is not certain
(escaped or repeated key member names, a key that is not an integer, a string without escapes
or a boolean, lone surrogate escapes, nesting deeper than 64) it leaves the flag off and the
caller parses the line exactly. See `_scan.c`.

`changed(before, after)` gives the sorted leaf paths whose values differ between two record
texts, by the diff contract's rules, or None when the texts alone cannot tell (escaped
strings, arrays of the same length that differ, ...): the caller then compares the parsed
records.
"""

from linescan._scan import changed, scan  # pants: no-infer-dep (compiled: the :dist wheel)

BLANK = 1  # only JSON whitespace: not a record
VALID = 2  # certainly a valid JSON object (RFC 8259, UTF-8)
KEY = 4  # the key view holds the canonical JSON text of the key (tokens joined by \x1f)
UTF8 = 8  # the line is UTF-8
TYPED = 16  # the line's leaf types are among the scan's `types`

KINDS = {1: "string", 2: "number", 3: "boolean", 4: "array"}  # the kinds of `types`

__all__ = ["BLANK", "KEY", "KINDS", "TYPED", "UTF8", "VALID", "changed", "scan"]
