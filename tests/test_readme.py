"""The README's examples run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def block(marker: str) -> str:
    """The README's python block whose first line is ``# <marker>``."""
    (found,) = [b for b in python_blocks() if b.startswith(f"# {marker}")]
    return found


def run_script(directory: Path, name: str) -> str:
    proc = subprocess.run(
        [sys.executable, name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_readme_host_and_firmware_examples_run(tmp_path):
    host, firmware = block("host.py"), block("hello_fw.py")
    (tmp_path / "hello_fw.py").write_text(firmware)
    (tmp_path / "host.py").write_text(host)
    assert run_script(tmp_path, "host.py") == "Message(data=b'PING', src=1024)"


def test_readme_console_example_runs(tmp_path):
    console = block("console.py")
    (tmp_path / "console.py").write_text(console)
    assert run_script(tmp_path, "console.py") == "True"


def test_readme_mailbox_example_runs(tmp_path):
    mailbox = block("mailbox.py")
    (tmp_path / "mailbox.py").write_text(mailbox)
    assert run_script(tmp_path, "mailbox.py") == "0xc0ffee"


def test_readme_glink_example_runs(tmp_path):
    (tmp_path / "glink.py").write_text(block("glink.py"))
    assert run_script(tmp_path, "glink.py") == "20000"


def command_rows() -> list[tuple[list[str], str]]:
    """The command table's rows: (the command's words, the first cell as written)."""
    rows = []
    for cell in re.findall(r"^\| `amplink ([^`]*)`", README.read_text(), re.M):
        head = re.split(r"[\s,]+", cell.split("[", 1)[0])
        words = [w for w in head if w.islower() and not w.startswith("-")]
        rows.append((words, cell.replace("\\|", "|")))
    return rows


def test_the_command_table_writes_options_as_the_help_does(capsys):
    from amplink.app import cli  # noqa: PLC0415 (only here)

    assert len(command_rows()) >= 8
    for words, cell in command_rows():
        with pytest.raises(SystemExit):
            cli.main([*words, "--help"])
        usage = " ".join(capsys.readouterr().out.split())  # the whole --help, one line
        for option in re.findall(r"--[a-z-]+", cell):
            assert option in usage, f"amplink {' '.join(words)}: {option} is not in {usage}"
            pair = f"{option} | --no-{option[2:]}"
            assert pair not in usage or pair.replace(" ", "") in cell.replace(" ", ""), (
                f"README: amplink {' '.join(words)} has {option}, --help has [{pair}]"
            )
