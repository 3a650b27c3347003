"""The campaign: its figures (figures.py, plots.py), the per-project warnings of /status
(project_warnings.py) and the campaign page that shows them (page.py, templates/)."""
