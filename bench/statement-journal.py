#!/usr/bin/env python3
"""Counts the temporary files SQLite opens for statement journals, per schema and INSERT form.

BENCHMARKS.md, "A group commit without a statement journal": a group commit appends 25
documents' entries in one multi-row INSERT inside a transaction. Each variant below builds
the log schema of migrations/sqlite (100 documents of 100 entries), then makes 20 such
commits under strace and counts the `etilqs_*` files SQLite opened (its temporary files).

    bench/statement-journal.py          # needs strace; about 5 seconds
"""
import os
import random
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = os.path.join(ROOT, "migrations/sqlite/20261123000001_init.sql")
VARIANTS = {
    "as it was (ON CONFLICT DO NOTHING, reference checked per row)": "plain",
    "INSERT OR IGNORE": "ignore",
    "PRAGMA defer_foreign_keys = ON in each transaction": "defer",
    "PRAGMA defer_foreign_keys = ON, INSERT OR IGNORE": "defer-ignore",
    "foreign keys off": "nofk",
    "foreign keys off, INSERT OR IGNORE": "nofk-ignore",
    "reference DEFERRABLE INITIALLY DEFERRED": "deferred",
    "reference DEFERRABLE INITIALLY DEFERRED, INSERT OR IGNORE": "deferred-ignore",
}


def commits(variant: str, path: str) -> None:
    """The 20 commits of one variant (run under strace by main)."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = " + ("OFF" if "nofk" in variant else "ON"))
    schema = open(INIT).read()
    if "deferred" in variant:
        schema = schema.replace(
            "REFERENCES documents (id) ON DELETE CASCADE,\n    seq",
            "REFERENCES documents (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,\n    seq",
        )
    db.executescript(schema)
    ids = [str(uuid.uuid4()) for _ in range(100)]
    seq = dict.fromkeys(ids, 0)
    db.execute("BEGIN")
    for i, d in enumerate(ids):
        db.execute("INSERT INTO documents VALUES (?, ?, 0, 0, 0)", (d, f"bench-{i}"))
    for _ in range(100):
        for d in ids:
            seq[d] += 1
            db.execute("INSERT INTO updates VALUES (?, ?, ?, 'ws', 0)", (d, seq[d], os.urandom(40)))
    db.execute("COMMIT")
    ignore = "ignore" in variant
    sql = (
        ("INSERT OR IGNORE" if ignore else "INSERT")
        + " INTO updates (doc_id, seq, data, origin, created_at) VALUES "
        + ",".join(["(?, ?, ?, ?, 0)"] * 25)
        + ("" if ignore else " ON CONFLICT (doc_id, seq) DO NOTHING")
    )
    print("ready", flush=True)
    for _ in range(20):
        db.execute("BEGIN")
        if "defer" in variant and "deferred" not in variant:
            db.execute("PRAGMA defer_foreign_keys = ON")
        args = []
        for d in random.sample(ids, 25):
            seq[d] += 1
            args += [d, seq[d], os.urandom(40), "ws 127.0.0.1:1"]
        db.execute(sql, args)
        db.execute("COMMIT")


def main() -> None:
    if len(sys.argv) == 3:
        commits(sys.argv[1], sys.argv[2])
        return
    print("| variant | temporary files |\n|---|--:|")
    for label, variant in VARIANTS.items():
        with tempfile.TemporaryDirectory() as dir:
            trace = os.path.join(dir, "trace")
            subprocess.run(
                ["strace", "-f", "-e", "trace=openat", "-o", trace,
                 sys.executable, __file__, variant, os.path.join(dir, "t.db")],
                check=True, stdout=subprocess.DEVNULL,
            )
            opened = sum("etilqs" in line for line in open(trace))
        print(f"| {label} | {opened} |")


if __name__ == "__main__":
    main()
