"""The README's host and firmware examples run as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_examples_run(tmp_path):
    host, firmware = python_blocks()
    assert "# hello_fw.py" in firmware
    (tmp_path / "hello_fw.py").write_text(firmware)
    (tmp_path / "host.py").write_text(host)
    proc = subprocess.run(
        [sys.executable, "host.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Message(data=b'PING', src=1024)"
