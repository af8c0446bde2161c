"""The compiled fast paths of amplink, each with a pure-Python twin that runs where it
could not be built (``optional``: a missing gcc or missing Python headers do not fail
the install; the Makefile then prints a WARNING line for each).  Everything else about
the package is in pyproject.toml.  Declared here, not in pyproject.toml's
``[tool.setuptools.ext-modules]``, which setuptools calls experimental and warns about
at every build step."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]


def compiled(module: str) -> Extension:
    """The extension ``module`` (``amplink.virtio._vring``) from its C file under src/."""
    source = f"src/{module.replace('.', '/')}.c"
    return Extension(module, [source], extra_compile_args=FLAGS, optional=True)


setup(
    ext_modules=[
        compiled("amplink.virtio._vring"),  # the virtqueue (amplink.virtio.rings)
        compiled("amplink.rpmsg._glink"),  # the GLINK FIFO ends (amplink.rpmsg.glink_ends)
        compiled("amplink.hw._mu"),  # the MU model's accessors (amplink.hw.imx_mu)
        compiled("amplink.irq._held"),  # held-signal sections (amplink.irq.held_signals)
    ],
)
