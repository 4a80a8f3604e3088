"""Plan against server: the one diff model (``diff``), the replica steps of a change
(``steps``), and the per-replica status report (``status``)."""
