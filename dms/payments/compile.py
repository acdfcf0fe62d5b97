"""Regenerate `escrow.json` (ABI, bytecode, compiler version) from `escrow.vy`: `python -m dms.payments.compile`.

Build step only: vyper is a build/test dependency, never installed with the daemon, and is imported only
inside `compile_escrow`. `--check` exits 1 when the committed artifact differs from a fresh compile.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dms.payments.contract import ARTIFACT_PATH, EVM_VERSION, SOURCE_PATH

VYPER_VERSION = "0.4.3"
"""The compiler the artifact is built with; the source's `# pragma version` says the same."""


def compile_escrow() -> dict[str, Any]:
    """The artifact as a fresh compile of the committed source gives it. Raises RuntimeError on a wrong vyper."""
    import vyper  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from vyper.compiler.settings import Settings  # type: ignore[import-untyped, import-not-found, unused-ignore]

    if vyper.__version__ != VYPER_VERSION:
        raise RuntimeError(f"vyper {VYPER_VERSION} is needed to build the escrow, found {vyper.__version__}")
    source = SOURCE_PATH.read_text()
    out = vyper.compile_code(
        source,
        contract_path=SOURCE_PATH.name,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
        settings=Settings(evm_version=EVM_VERSION),
    )
    return {
        "contract": SOURCE_PATH.name,
        "compiler": f"vyper {vyper.__version__}",
        "evm_version": EVM_VERSION,
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact's committed text: stable key order, one trailing newline."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dms.payments.compile", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare with the committed artifact")
    args = parser.parse_args(argv)
    text = render(compile_escrow())
    if args.check:
        same = ARTIFACT_PATH.is_file() and ARTIFACT_PATH.read_text() == text
        print(f"{ARTIFACT_PATH}: {'up to date' if same else 'STALE: run python -m dms.payments.compile'}")
        return 0 if same else 1
    ARTIFACT_PATH.write_text(text)
    print(f"wrote {ARTIFACT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
