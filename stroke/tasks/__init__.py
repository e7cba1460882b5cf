"""The tasks stroke trains, each a package with the same named parts, found through
`stroke.tasks.registry` (see docs/architecture.md): `classification` (a class per slice)
and `segmentation` (lesion masks). A task never imports another task."""
