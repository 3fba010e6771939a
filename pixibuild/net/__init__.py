"""The one HTTP stack: pixi's network configuration (mirrors, TLS, proxies), credentials, and the
OCI distribution client, shared by channel downloads, base-image pulls and pushes."""
