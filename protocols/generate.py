"""Generate the Python stubs of ``trading.proto`` into ``protocols/generated``.

The stubs are committed, so installing raytrade needs no protobuf compiler; this script is how
they are made, and ``--check`` (run by the unit tests) proves the committed ones match the
.proto and the installed grpcio-tools. Run it after every change to the .proto::

    python -m protocols.generate          # rewrite protocols/generated/
    python -m protocols.generate --check  # exit 1 if they differ

The .proto is compiled as ``raytrade/v1/trading.proto`` (the conventional path for package
``raytrade.v1``, and the file name servers report through reflection); the import that the gRPC
stub makes of the message module is rewritten to this package's location.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "trading.proto"
TARGET = HERE / "generated"
PROTO_PATH = "raytrade/v1/trading.proto"
OUTPUTS = ("trading_pb2.py", "trading_pb2.pyi", "trading_pb2_grpc.py")
PACKAGE_INIT = '"""Generated from protocols/trading.proto by `python -m protocols.generate`."""\n'
GRPC_HEADER = "# mypy: ignore-errors\n"
"""Generated code is not ours to type-check: the gRPC module is untyped, and the message
stubs need protobuf's own stubs (types-protobuf) to pass strict mypy."""


class GenerationError(RuntimeError):
    """The protobuf compiler failed; the message carries its output."""


def generate(target: Path) -> None:
    """Compile the .proto and write the three stub modules and ``__init__.py`` to ``target``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        source = root / "src" / PROTO_PATH
        source.parent.mkdir(parents=True)
        shutil.copyfile(PROTO, source)
        out = root / "out"
        out.mkdir()
        include = Path(protoc.__file__).parent / "_proto"
        status = protoc.main([
            "grpc_tools.protoc",
            f"-I{root / 'src'}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            PROTO_PATH,
        ])
        if status != 0:
            raise GenerationError(f"protoc failed with status {status} on {PROTO}")
        produced = out / Path(PROTO_PATH).parent
        target.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            text = (produced / name).read_text()
            if name == "trading_pb2.pyi":
                text = GRPC_HEADER + text
            if name == "trading_pb2_grpc.py":
                text = GRPC_HEADER + text.replace(
                    "from raytrade.v1 import trading_pb2 as",
                    "from protocols.generated import trading_pb2 as",
                )
            (target / name).write_text(text)
        (target / "__init__.py").write_text(PACKAGE_INIT)


def differences(target: Path = TARGET) -> list[str]:
    """Return the generated files that differ from a fresh generation (empty: all match)."""
    with tempfile.TemporaryDirectory() as work:
        fresh = Path(work)
        generate(fresh)
        return [
            name
            for name in (*OUTPUTS, "__init__.py")
            if not (target / name).exists()
            or (target / name).read_text() != (fresh / name).read_text()
        ]


def main(argv: list[str] | None = None) -> int:
    """Run the command line: generate, or check with ``--check``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the committed stubs with a fresh generation")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        if stale:
            print(f"stale generated files: {', '.join(stale)}; run python -m protocols.generate")
            return 1
        print("generated stubs match protocols/trading.proto")
        return 0
    generate(TARGET)
    print(f"wrote {', '.join(OUTPUTS)} to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
