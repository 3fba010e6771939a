"""The conda vocabulary shared by every stage: records, subdirs/platforms, file names, versions and
MatchSpecs, and streaming readers of `.conda`/`.tar.bz2` archives."""
