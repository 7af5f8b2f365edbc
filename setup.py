"""Build of the optional C writer for flat Avro rows (schemas/_avro_rows.c); everything else is in
pyproject.toml. Without a C compiler the install still succeeds and schemas.avro_rows uses its Python
writer (same bytes; bench/avro.py measures both)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("schemas._avro_rows", ["schemas/_avro_rows.c"], optional=True)])
