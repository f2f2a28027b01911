#!/usr/bin/env python3
"""python-logging-loki (JSON) pushing to Janus.

usage: python_logging_loki_push.py JANUS_URL RUN_ID COUNT
"""
import logging
import sys

import logging_loki

url, run_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = logging_loki.LokiHandler(
    url=f"{url}/loki/api/v1/push",
    tags={"namespace": "clients", "pod": "python-1", "container": "py"},
    version="1",
)
logger = logging.getLogger("janus-test")
logger.setLevel(logging.INFO)
logger.addHandler(handler)
for i in range(count):
    logger.info("python %s line %d", run_id, i)
print("pushed", count)
