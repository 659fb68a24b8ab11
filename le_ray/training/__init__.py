"""Training one trial: the model, the losses (LE and its cross-batch history, BCE, focal), the
objectives, the loop (optimiser, schedule, CUDA-graph step), devices, gradient diagnostics and the trial itself
(:func:`le_ray.training.trial.run_trial`: TrialSpec -> TrialResult, the one function every runner calls)."""
