"""hwmodels.validate: end-to-end checks of the simulator against real engines.

Unlike the rest of hwmodels, this package runs the simulator (envs.core), so nothing below hwmodels
may import it; keep this __init__ free of imports so that `import hwmodels` never pulls in envs.
"""
