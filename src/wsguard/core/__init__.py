"""The sans-I/O core: plain synchronous classes that take inputs and return decisions."""
