"""rprm-lite's version, and the versions every result and cache key records."""

from __future__ import annotations

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """rprm-lite's and llama-cpp-python's versions (the engine's build decides a result too)."""
    import llama_cpp

    return {"rprm_lite": __version__, "llama_cpp_python": llama_cpp.__version__}
