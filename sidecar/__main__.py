import os
import shutil
import sys

# Before anything imports prometheus_client, which reads PROMETHEUS_MULTIPROC_DIR when imported:
# sidecar.cli.workers imports neither it nor anything that does (tests/unit/cli/test_workers.py).
from sidecar.cli.workers import share_metrics

metrics_dir = share_metrics(sys.argv[1:], os.environ)
try:
    from sidecar.cli.main import main

    status = main()
finally:
    if metrics_dir is not None:  # after the workers have stopped (serve waits for them)
        shutil.rmtree(metrics_dir, ignore_errors=True)
sys.exit(status)
