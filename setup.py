"""Builds flowlens's optional C extension, flowlens._native (the fast path of the decoders).

Everything else is declared in pyproject.toml. Without a C compiler the build goes on without the
extension and flowlens uses its Python decoders (slower, same results)."""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("flowlens") / "_native"


def source_digest() -> str:
    """The digest flowlens.sources.native compares, so that a stale build is never used."""
    digest = hashlib.sha256()
    for path in sorted(NATIVE.glob("*.[ch]")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


setup(ext_modules=[Extension(
    "flowlens._native",
    sources=[str(p) for p in sorted(NATIVE.glob("*.c"))],
    depends=[str(p) for p in sorted(NATIVE.glob("*.h"))],
    define_macros=[("FLOWLENS_NATIVE_SOURCE", f'"{source_digest()}"')],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    optional=True,
)])
