"""Bot features, one folder each; every package here is loaded as an extension."""
