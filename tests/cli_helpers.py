"""What the CLI and view tests share: the reference captures and running a command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmintro.cli.main import cli

REFERENCE = Path(__file__).parent / "data" / "reference" / "procfs"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference /proc captures not available")


def run(*args: str, ok: bool = True):
    """Invoke ``mmintro ARGS``; with ``ok``, assert it exited 0."""
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").stdout)
