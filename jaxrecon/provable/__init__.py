"""Provable privacy attacks on 2-layer ReLU nets at KKT points (2410.07632): univariate reconstruction and
high-dimensional membership inference, with the shallow nets they attack."""

from jaxrecon.provable.membership import (MEMBERSHIP_DATASETS, decide, membership_data, membership_report,
                                          membership_score)
from jaxrecon.provable.shallow import (balancedness, fit_many, init_many, kink_identity_residual, kink_sum)
from jaxrecon.provable.univariate import (PATTERNS, UnivariateResult, fraction_training, margin_from_leak,
                                          univariate_candidates, univariate_data)
