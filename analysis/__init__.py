"""Success statistics of a sweep, read from MLflow: tables, comparisons, seed budgets, plots and a report."""
