"""Test-wide settings: DDS stays on this machine, on a domain of its own per test run."""

import os
import signal

# A shell runs a background job (`make test &`) with SIGINT ignored, and an ignored signal
# stays ignored in every process the tests start: Ctrl-C tests of the CLIs and nodes would
# then test nothing. Restore the default so node processes get SIGINT as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Set before any rclpy.init in this process and inherited by every node process a test starts.
# Under pytest-xdist (`make test` runs two workers) each worker gets a domain of its own, so
# the nodes of one worker's tests never see another's: the workers inherit the controller's
# domain and move it by their index (distinct for up to 100 workers, all in 1..100).
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
_worker = os.environ.get('PYTEST_XDIST_WORKER', '')
if _worker.startswith('gw') and _worker[2:].isdigit():
    _base = int(os.environ['ROS_DOMAIN_ID']) - 1
    os.environ['ROS_DOMAIN_ID'] = str(1 + (_base + 37 * (1 + int(_worker[2:]))) % 100)

# Property tests draw fresh examples on every developer run; CI runs a fixed, derandomised
# set so a green submission stays green (failures found locally are kept in .hypothesis/).
from hypothesis import settings  # noqa: E402

settings.register_profile('ci', derandomize=True, print_blob=True)
if os.environ.get('CI'):
    settings.load_profile('ci')
