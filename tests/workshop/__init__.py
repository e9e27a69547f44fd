"""Workshop mode: TLS, the classroom in network namespaces, the instructor board, the roster."""
