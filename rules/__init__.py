"""The doit rule set over the pixibuild library (installed as `pixibuild.rules`)."""
