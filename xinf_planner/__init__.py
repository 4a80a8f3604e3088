"""xinf-plan: plan, validate and apply DeepSeek-R1 deployments through Xinference.

Importing this package is cheap: it imports neither the Xinference client nor NVML.
"""

__version__ = "0.1.0"
