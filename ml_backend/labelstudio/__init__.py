"""Everything about Label Studio: its API (gateway), the backend's copy of each project's tasks
(mirror), annotations read into training examples (reading) and the label set a model is bound
to (label_set)."""
