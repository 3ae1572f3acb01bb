from setuptools import Extension, setup

# All metadata lives in setup.cfg. The one C module is optional: it fuses the selection's
# bracketing pass (captum_prune/_kernels.c); where it cannot be built (no C compiler) the
# package installs anyway and runs the same selection in numpy, with the same results, slower.
setup(
    ext_modules=[
        Extension("captum_prune._kernels", ["captum_prune/_kernels.c"], optional=True)
    ]
)
