"""`make bench`: the generated project against what its users would run instead."""
