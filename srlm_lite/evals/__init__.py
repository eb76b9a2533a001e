"""Evaluations: the judge against labelled preferences, IFEval instruction following, head-to-head of iterations."""
