package run

// budgetFlags are the relay's flags that enforce a budget inside the
// sandbox. TODO(budget): enforce cost and time budgets.
func budgetFlags(b Budget) []string {
	return nil
}
