"""Workloads several test modules plan."""

# DeepSeek-R1 671B at its native FP8, the examples/cluster intent as keyword arguments.
R1_FP8 = {
    "model": "deepseek-r1:671",
    "formats": ["pytorch"],
    "engines": ["vllm"],
    "context_length": 16384,
    "concurrency": 8,
    "objective": "quality",
}
