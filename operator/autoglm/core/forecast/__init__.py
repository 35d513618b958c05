"""Forecasting scaler, pure part: load series, predictors chosen by backtest, the HPA-semantics decision,
and a discrete-time simulator that runs every policy (ours, the peers', the reactive HPA, the oracle)
through the same decision rule.

Only names live here, with no import of numpy or scikit-learn: the command line and the operator import this
package's modules where they use them, so an operator with no forecasting on never loads them."""

# The policies the simulator compares, in the order it reports them.
POLICIES = ("reactive", "predictive", "auto-arima", "holt-winters", "oracle")
# The upper forecast's quantile: under-provisioning weighs 4 times over-provisioning.
QUANTILE = 0.8
