"""Where and how retrains run: the queue and the embedded runner (queue), the jobs (run) and the
retrain's steps (retrain_steps), a scoring pass split over the RQ workers (split_pass), and the
per-project retrain state that merges a burst of events into one retrain (status, embedded_state)."""
