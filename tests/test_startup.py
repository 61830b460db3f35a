"""Start-up stays cheap: image, video and emulator code load on first use, not at start."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_server_loads_no_image_video_or_emulator_code() -> None:
    probe = (
        "import sys\n"
        "from server.app import build_server\n"
        "from server.settings import Settings\n"
        "build_server(Settings(home=sys.argv[1]))\n"
        "print(','.join(m for m in ('PIL', 'av', 'server.sandbox', 'server.media.video') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "/nonexistent-home"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == ""
