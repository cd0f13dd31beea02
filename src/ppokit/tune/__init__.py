"""`ppokit tune`: hyperparameter search for the Gymnasium front end on Optuna (pip install 'ppokit[tune]')."""
