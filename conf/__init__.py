"""The Hydra configs of `stroke`; the build ships this folder as the package `stroke.conf`."""
