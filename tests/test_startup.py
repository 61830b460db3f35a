"""Start-up stays cheap: image, video and emulator code load on first use, not at start."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from server.app import build_server
from server.settings import Settings
build_server(Settings(home=sys.argv[1]))
print(",".join(m for m in ("PIL", "av", "server.sandbox") if m in sys.modules))
"""


def test_building_the_server_loads_no_image_video_or_emulator_code() -> None:
    command = [sys.executable, "-c", PROBE, "/nonexistent-home"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
