"""The build graph without doit: nodes keyed by the hash of their inputs, stamps, and the node
actions (`steps`), which only ever read verified blobs from paths the plan hands them."""
