"""What every tools/list costs an agent's context: the default registration's answer, as the stdio
server writes it (the JSON-RPC line bench/startup.py measures), stays within 9 KB in both eras, so
whatever lands later is held to it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.startup import ERAS, TOOLS_LIST_BUDGET, time_tools_list


@pytest.mark.parametrize("era", list(ERAS))
def test_tools_list_fits_in_9_kb(tmp_path: Path, era: str) -> None:
    # The default registration: every model, no optional settings (no WAN_MCP_* but the home).
    env = {"PATH": "/usr/bin:/bin", "WAN_MCP_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "server", "serve", "--log-level", "WARNING"]
    _, size = time_tools_list(command, env, era)
    assert 0 < size <= TOOLS_LIST_BUDGET, f"tools/list is {size:,} bytes in the {era} era"
