"""Reports: the HTML comparison report and its figures."""
