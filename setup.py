from setuptools import setup

# All metadata lives in setup.cfg.
setup()
