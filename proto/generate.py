"""Generate the Python protobuf/gRPC modules in proto/ from the .proto sources.

Runs grpc_tools.protoc on model_config.proto and grpc_service.proto, then
rewrites protoc's absolute sibling imports (`import model_config_pb2 as ...`)
to package imports (`from proto import model_config_pb2 as ...`) so the
modules load as `proto.grpc_service_pb2` etc. from the repo root without
putting proto/ itself on sys.path.

Usage (from the repo root; this is what `make proto` runs):
    python proto/generate.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PACKAGE = "proto"
PROTO_FILES = ("model_config.proto", "grpc_service.proto")
# Only grpc_service.proto defines a service; model_config.proto needs no _grpc module.
SERVICE_FILES = ("grpc_service.proto",)
GENERATED = ("model_config_pb2.py", "grpc_service_pb2.py", "grpc_service_pb2_grpc.py")

# protoc writes `import foo_pb2 as foo__pb2` for imports between generated modules.
_SIBLING_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def _protoc(proto_dir: Path, out_dir: Path, files: tuple[str, ...], out_flag: str) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"{out_flag}={out_dir}", *files]
    result = subprocess.run(cmd, cwd=proto_dir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({' '.join(cmd)}):\n{result.stderr}")


def rewrite_imports(source: str) -> str:
    """Turn protoc's absolute sibling imports into `from proto import ...`."""
    return _SIBLING_IMPORT.sub(rf"from {PACKAGE} import \1 as \2", source)


def generate(out_dir: Path = PROTO_DIR, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Compile the .proto sources in `proto_dir` into `out_dir`; return the written files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Generate into a scratch dir first so a failing run leaves out_dir untouched.
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        _protoc(proto_dir, scratch, PROTO_FILES, "--python_out")
        _protoc(proto_dir, scratch, SERVICE_FILES, "--grpc_python_out")
        written = []
        for name in GENERATED:
            source = (scratch / name).read_text()
            rewritten = rewrite_imports(source)
            if name != "model_config_pb2.py" and rewritten == source:
                raise RuntimeError(f"{name}: expected a sibling import to rewrite; protoc output changed?")
            if re.search(r"^import \w+_pb2\b", rewritten, re.MULTILINE):
                raise RuntimeError(f"{name}: an absolute _pb2 import is left after rewriting")
            target = out_dir / name
            target.write_text(rewritten)
            written.append(target)
    return written


def main() -> None:
    for path in generate():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
