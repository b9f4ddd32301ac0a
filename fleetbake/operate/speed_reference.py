"""The reference machine for `invoke request`'s timeout_factor: figures of one passing verification.

Filled in from the pydebug record below: steps from its JSON, TEST_FILE_SECONDS from its JUnit file
(request.seconds_per_test_file: each test file's test cases' own time, summed).
"""

REFERENCE = {
    "machine": "this project's CI machine: Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB RAM, Debian 12, "
               "kernel 6.18, Docker 20.10.24 (docs/benchmarks.md)",
    "image": "fleetbake/worker:debian-12",
    "image_id": "sha256:0b7abaa803b6be2da2dfc605a505b96d83eee3c10778fe1b33efb8f2d2c528b0",
    "configuration": "pydebug",
    "record": "build/reports/sha256-0b7abaa803b6be2da2dfc605a505b96d83eee3c10778fe1b33efb8f2d2c528b0/pydebug.json",
    "started": "2026-11-28T13:00:15Z",
    "finished": "2026-11-28T13:03:24Z",
    # The record names no revision; the checkout it ran from was at or just past this commit
    # (fb1053b, 11:43Z; the next, 1b08443, was committed at 13:02:36Z, during the run).
    "fleetbake_revision": "fb1053bcb39e835b1b75cc82731ee13e18756afc",
    "cpython": "3.13.5",
    "cpython_source": "debian:trixie/python3.13",
    "jobs": 2,  # verify's default: the CPU count
    "steps": {"configure": 23.6, "make": 58.9, "tests": 101.6},
    "tests": {"tests": 6224, "failures": 0, "errors": 0, "skipped": 497},
    # The other idle pydebug runs of the same day on that machine, as test time over the reference's:
    # 0.988, 1.005, 1.011, 1.068; a run while another verification ran beside it: 1.98.
    "repeat_ratios": [0.988, 1.005, 1.011, 1.068],
}

# Seconds of test time per test file (regrtest's JUnit <testsuite>), summed over its test cases.
TEST_FILE_SECONDS = {
    'test_bz2': 0.84,
    'test_ctypes': 1.63,
    'test_curses': 0.4,
    'test_dbm': 0.13,
    'test_dbm_gnu': 0.02,
    'test_dbm_ndbm': 0.02,
    'test_decimal': 4.43,
    'test_fcntl': 0.35,
    'test_hashlib': 0.44,
    'test_lzma': 4.26,
    'test_posix': 1.77,
    'test_pyexpat': 0.01,
    'test_readline': 0.3,
    'test_select': 1.53,
    'test_socket': 35.79,
    'test_sqlite3': 0.39,
    'test_ssl': 50.65,
    'test_sys': 2.04,
    'test_tarfile': 20.83,
    'test_tkinter': 1.49,
    'test_ttk': 0.52,
    'test_unicodedata': 1.5,
    'test_uuid': 0.11,
    'test_venv': 3.33,
    'test_xml_etree_c': 0.99,
    'test_zipfile': 25.69,
    'test_zlib': 0.73,
    'test_zoneinfo': 0.44,
}
