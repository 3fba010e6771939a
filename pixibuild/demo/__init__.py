"""Generated material: real conda archives, local channels and locks for the embedded demo
(`dodo.py`) and the benchmarks' workspaces. Nothing here runs during a user's build."""
