"""Never finishes: expected verdict TIME_LIMIT_EXCEEDED once the wall-time limit passes.

It ignores SIGTERM too, so only a hard kill stops it, as it would a participant's stuck code.
"""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("timeout: sleeping forever", flush=True)
while True:
    time.sleep(3600)
