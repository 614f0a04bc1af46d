"""Training under a LUT/DSP budget: the :class:`ResourceBudget` callback, the
repair step that guarantees the budget, and Pareto sweeps over budgets."""

from .budget import METHODS, BudgetResult, ResourceBudget, exact_estimate, minimum_cost
from .repair import RepairResult, repair_to_budget, within_budget

__all__ = [
    "METHODS",
    "BudgetResult",
    "RepairResult",
    "ResourceBudget",
    "exact_estimate",
    "minimum_cost",
    "repair_to_budget",
    "within_budget",
]
