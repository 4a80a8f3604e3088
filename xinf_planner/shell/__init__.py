"""The imperative shell: files, templates, local weights, hardware probes, the Xinference
server, the state file, and deploying. Thin; the decisions are made in ``core``."""
