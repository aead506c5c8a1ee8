"""llama.cpp for the GGUF tests: `llama-cpp-python` built from source in its own environment, `.venv-llamacpp/`.

Built on first use (git-ignored; reused while its stamp matches the version: 22 minutes on this 2-core machine
under other load, once), as tests/annotate/test_annotate_labelstudio_server.py does for Label Studio. The tests
drive it through a child process (tests/export/llamacpp_probe.py): the test environment never imports llama.cpp.

    .venv/bin/python tests/export/llamacpp_env.py      # build it now, printing the time it took
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-llamacpp"
STAMP = VENV / f".installed-{LLAMA_CPP_PYTHON_VERSION}"
INSTALL_TIMEOUT_S = 5400
# CPU only, no multimodal library, no server / tools / examples (the package forces llama.cpp's common library
# on), and no optimisation: it compiles several times faster, and the test models are tiny
CMAKE_ARGS = ("-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
              "-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF "
              "-DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0")


def llamacpp_python() -> Path:
    """The python of the environment that has llama-cpp-python, built from source on first use."""
    python = VENV / "bin" / "python"
    if python.exists() and STAMP.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
    started = time.time()
    # CMake builds in VENV/build (to watch its progress), emptied first: a build interrupted there was
    # configured for another of pip's temporary source folders, which CMake refuses to reuse
    shutil.rmtree(VENV / "build", ignore_errors=True)
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              "--no-binary", "llama-cpp-python", "--config-settings", f"build-dir={VENV / 'build'}",
                              f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env)
    assert install.returncode == 0, (f"building llama-cpp-python failed:\n{install.stdout[-3000:]}\n"
                                     f"{install.stderr[-3000:]}")
    shutil.rmtree(VENV / "build", ignore_errors=True)
    STAMP.write_text(f"built in {time.time() - started:.0f} s\n")
    return python


if __name__ == "__main__":
    t0 = time.time()
    print(llamacpp_python(), f"{time.time() - t0:.0f} s")
