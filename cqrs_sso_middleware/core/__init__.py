"""The sans-I/O protocol core: no sockets, no frameworks, no httpx. Drivers do the I/O."""
