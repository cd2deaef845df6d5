"""The optional C extension (schemas/_avro_native.c, the native Avro codec); everything
else is in pyproject.toml. `optional=True`: without a compiler the install still succeeds and
schemas/avro_decoder.py uses its pure-Python path."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("schemas._avro_native", ["schemas/_avro_native.c"], optional=True)])
