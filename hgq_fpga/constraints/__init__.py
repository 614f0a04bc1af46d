"""Training under a LUT/DSP budget: the :class:`ResourceBudget` callback, the
repair step that guarantees the budget, layer sensitivities, and Pareto sweeps
over budgets."""

from .budget import METHODS, BudgetResult, ResourceBudget, exact_estimate, minimum_cost
from .repair import RepairResult, repair_to_budget, within_budget
from .sensitivity import LayerSensitivity, Sensitivities, layer_sensitivities
from .sweep import SweepPoint, pareto_sweep, plot_pareto, save_sweep

__all__ = [
    "METHODS",
    "BudgetResult",
    "LayerSensitivity",
    "RepairResult",
    "ResourceBudget",
    "Sensitivities",
    "SweepPoint",
    "exact_estimate",
    "layer_sensitivities",
    "minimum_cost",
    "pareto_sweep",
    "plot_pareto",
    "repair_to_budget",
    "save_sweep",
    "within_budget",
]
