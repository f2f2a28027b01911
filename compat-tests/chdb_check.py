#!/usr/bin/env python3
"""Runs statements Janus generated against a current ClickHouse engine (PyPI chdb-core, in
process) and compares their answers with the ones the old server gave.

usage: chdb_check.py CASE.json
CASE.json: {"ddl": [...], "table": "db.logs", "rows": "<TabSeparated rows of the table>",
            "statements": [{"sql": "...", "expected": "<TabSeparated answer>", "ordered": bool}]}
Exit 0 when every statement runs and answers the same (row order compared only where the
statement orders its rows), 1 otherwise, naming the statement.
"""
import json
import sys
import tempfile

from chdb import session


def main(path):
    with open(path, encoding="utf-8") as f:
        case = json.load(f)
    failures = []
    with tempfile.TemporaryDirectory() as d:
        s = session.Session(d)
        for ddl in case["ddl"]:
            s.query(ddl)
        if case["rows"]:
            s.query(f"INSERT INTO {case['table']} FORMAT TabSeparated\n{case['rows']}")
        for st in case["statements"]:
            try:
                got = str(s.query(st["sql"]))
            except Exception as e:  # the engine refused the statement
                failures.append(f"{st['sql']}\n  refused: {e}")
                continue
            want = st["expected"]
            if not st.get("ordered"):
                got = "\n".join(sorted(got.splitlines()))
                want = "\n".join(sorted(want.splitlines()))
            if got.strip("\n") != want.strip("\n"):
                failures.append(f"{st['sql']}\n  expected: {want[:500]!r}\n  got: {got[:500]!r}")
        print(f"chdb {s.query('SELECT version()', 'TabSeparated')}".strip()
              + f": {len(case['ddl'])} DDL, {len(case['statements'])} statements")
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
