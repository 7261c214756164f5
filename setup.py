"""Builds the one compiled part, the exact partial JPEG decoder (mvn/datasets/jpeg_region.c),
in place: ``python setup.py build_ext --inplace``. It needs a C compiler and libjpeg-turbo's
headers (Debian/Ubuntu: ``apt install libjpeg62-turbo-dev`` or ``libjpeg-turbo8-dev``; conda:
``libjpeg-turbo``). Without them the build says so and stops without error (``optional``), and
everything works, decoding whole frames (README "Data path")."""
from setuptools import Extension, setup

setup(
    name='context-aware-poseformer',
    py_modules=[],
    ext_modules=[Extension('mvn.datasets._jpeg_region', ['mvn/datasets/jpeg_region.c'], libraries=['jpeg'],
                           extra_compile_args=['-O2'], optional=True)],
)
