"""Test-wide settings: DDS stays on this machine, on a domain of its own per test run."""

import os
import signal

# A shell runs a background job (`make test &`) with SIGINT ignored, and an ignored signal
# stays ignored in every process the tests start: Ctrl-C tests of the CLIs and nodes would
# then test nothing. Restore the default so node processes get SIGINT as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Set before any rclpy.init in this process and inherited by every node process a test starts.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))

# Property tests draw fresh examples on every developer run; CI runs a fixed, derandomised
# set so a green submission stays green (failures found locally are kept in .hypothesis/).
from hypothesis import settings  # noqa: E402

settings.register_profile('ci', derandomize=True, print_blob=True)
if os.environ.get('CI'):
    settings.load_profile('ci')
