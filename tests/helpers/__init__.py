"""Helpers of the test suite: shared functions and the scripts that tests run in their own processes."""
