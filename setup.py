"""Packaging detail that pyproject.toml cannot say: the top-level templates/ folder ships
inside the wheel as the package ``xinf_planner._templates`` (found by templates.templates_dir)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["xinf_planner", "xinf_planner.*"]) + ["xinf_planner._templates"],
    package_dir={"xinf_planner._templates": "templates"},
    package_data={
        "xinf_planner.core": [
            "schemas/*.json",
            "rules.yaml",
            "engines.yaml",
            "catalog/data/*.yaml",
            "catalog/data/*.json",
            "memory/constants.yaml",
            "serving/constants.yaml",
        ],
        "xinf_planner._templates": ["render/*.tmpl"],
    },
)
