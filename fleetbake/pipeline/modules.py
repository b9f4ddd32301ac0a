"""The optional extension modules a worker image must let CPython build.

verify imports each of them with the freshly built interpreter; a row's
`missing_ok` may name only these (the names CPython's build reports).
"""

OPTIONAL_MODULES = (
    "_ssl", "_hashlib", "_sqlite3", "zlib", "_bz2", "_lzma", "_ctypes", "readline", "_curses",
    "_curses_panel", "_dbm", "_gdbm", "_tkinter", "_uuid", "_zoneinfo", "_decimal", "pyexpat",
    "_elementtree", "_multiprocessing", "_posixshmem", "_ctypes_test", "_testcapi",
)
