"""The cluster monitor: `python scripts/monitor_cluster.py --health|--metrics|--watch [--json]`.

The same as the `notebook-monitor` console script (src/notebook/monitor/main.py has every option).
"""

import sys

from notebook.monitor.main import main

if __name__ == "__main__":
    sys.exit(main())
