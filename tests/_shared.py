"""Where the shared research material (``shared/``: parity fixtures) is, and what a test does
when it is missing.

Lookup order: ``$MINDCV_EXT_SHARED`` when set (only there), else ``../shared`` beside the
repository checkout (the layout of CI, which runs ``.ci/run`` in a clone with ``shared/`` next to
it), else ``shared/`` inside the checkout. A test that needs a fixture calls
:func:`require_fixture`: it fails when ``$CI`` is set (CI must run every parity test) and skips
otherwise, naming the paths it looked at.

Also the skip markers for tests that need a kernel toolchain (AKG for Hybrid-DSL kernels, g++
for the ahead-of-time CPU kernels).
"""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV_VAR = "MINDCV_EXT_SHARED"


def shared_candidates():
    """The directories searched for ``shared/``, in order."""
    if os.environ.get(ENV_VAR):
        return [os.path.abspath(os.environ[ENV_VAR])]
    return [os.path.normpath(os.path.join(REPO, "..", "shared")), os.path.join(REPO, "shared")]


def shared_dir():
    """The first existing ``shared/`` directory, or None."""
    return next((p for p in shared_candidates() if os.path.isdir(p)), None)


def in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_fixture(name, *files):
    """Path of ``shared/fixtures/<name>`` holding ``files``; fail (in CI) or skip when absent."""
    looked = [os.path.join(p, "fixtures", name) for p in shared_candidates()]
    for path in looked:
        if all(os.path.isfile(os.path.join(path, f)) for f in files) and os.path.isdir(path):
            return path
    message = (f"fixture {name!r} ({', '.join(files)}) not found in {' or '.join(looked)}; "
               f"set {ENV_VAR} to the shared/ directory")
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_module(name, why):
    """Import ``name``; when it is missing fail (in CI, where scripts/setup_env.sh installs it) or skip."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as err:
        message = f"{why} needs {name} (installed by scripts/setup_env.sh): {err}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _kind_available(kind):
    try:
        import ascend_kernels
        return ascend_kernels.kind_available(kind)
    except Exception:  # pylint: disable=broad-except
        return False


needs_akg = pytest.mark.skipif(not _kind_available("hybrid"),
                               reason="needs AKG (Hybrid-DSL kernels) for this device target")
needs_gxx = pytest.mark.skipif(not _kind_available("aot_cpu"),
                               reason="needs the CPU target and g++ (ahead-of-time CPU kernels, $CXX)")
