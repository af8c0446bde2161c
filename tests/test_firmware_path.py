"""Where a bare ``*.elf`` firmware name is found: the folders of
``AMPLINK_FIRMWARE_PATH``, then the newest complete build of ``make firmware``."""

import errno
import os

import pytest

from amplink.remoteproc.elf import FirmwareError
from amplink.remoteproc.firmware_path import COMPLETE, built_firmware_dir, lookup, search_path
from amplink.remoteproc.fwref import resolve


def locate_firmware(spec: str) -> str:
    """What fwref's rule makes of ``spec``, checked to exist (as a board or boot does)."""
    ref = resolve(spec)
    ref.check()
    return ref.name


@pytest.fixture
def folders(tmp_path, monkeypatch):
    first, second, cache = tmp_path / "first", tmp_path / "second", tmp_path / "cache"
    for d in (first, second, cache):
        d.mkdir()
    monkeypatch.setenv("AMPLINK_FIRMWARE_PATH", f"{first}::{second}")
    monkeypatch.setenv("AMPLINK_FIRMWARE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    return first, second, cache


def test_a_bare_elf_name_is_searched_in_order(folders):
    first, second, _ = folders
    (second / "fw.elf").write_bytes(b"2")
    assert locate_firmware("fw.elf") == str(second / "fw.elf")
    (first / "fw.elf").write_bytes(b"1")
    assert locate_firmware("fw.elf") == str(first / "fw.elf")
    assert lookup("other.elf") is None


def test_the_current_folder_paths_and_other_names_are_taken_as_given(folders):
    first, _, _ = folders
    (first / "fw.elf").write_bytes(b"1")
    open("fw.elf", "wb").close()  # in the current folder: it wins
    assert locate_firmware("fw.elf") == os.path.abspath("fw.elf")
    assert resolve("./absent.elf").name == os.path.abspath("absent.elf")  # a path: not searched
    assert locate_firmware("amplink.firmware.echo") == "amplink.firmware.echo"


def test_the_newest_complete_build_comes_after_the_path(folders):
    first, second, cache = folders
    assert built_firmware_dir() is None and search_path() == [first, second]
    old, new, partial = cache / "old", cache / "new", cache / "partial"
    for d in (old, new, partial):
        d.mkdir()
    (old / COMPLETE).touch()
    (new / COMPLETE).touch()
    os.utime(old / COMPLETE, (1, 1))
    (partial / "fw.elf").write_bytes(b"half")  # a build still running has no stamp
    (new / "fw.elf").write_bytes(b"built")
    assert built_firmware_dir() == new
    assert locate_firmware("fw.elf") == str(new / "fw.elf")


def test_a_name_found_nowhere_is_enoent_naming_the_folders(folders):
    first, second, _ = folders
    with pytest.raises(FirmwareError) as exc:
        locate_firmware("nowhere.elf")
    assert exc.value.errno == errno.ENOENT
    assert f"{first}, {second}" in str(exc.value) and "make firmware" in str(exc.value)


def test_a_directory_given_as_firmware_is_said_to_be_one(tmp_path):
    """Not "not found" (found by a new user: `amplink firmware r5f DIR.elf`)."""
    folder = tmp_path / "dir.elf"
    folder.mkdir()
    with pytest.raises(FirmwareError) as exc:
        resolve(str(folder)).source_path()
    assert exc.value.errno == errno.EISDIR
    assert "is a directory" in str(exc.value)
