"""The content-addressed store: verified blobs by sha256, the fetcher that fills it, and the one
module (`roots`) that decides where every cache lives."""
