"""The sweep engine: the plan of (seed × loss) trials, the Ray driver (put once, one task per trial,
stream, stop cleanly), the results store, the experiment audit and the test-only fault hooks."""
