"""Packages are found, not listed: the code under lit_regularize/, and configs/ (kept at the top of the repository)
shipped from where it is as the package data lit_regularize.configs. Everything else lives in setup.cfg."""
from setuptools import find_namespace_packages, find_packages, setup

setup(packages=find_packages(include=["lit_regularize", "lit_regularize.*"])
      + [f"lit_regularize.{p}" for p in find_namespace_packages(include=["configs", "configs.*"])])
