"""Monthly statements: closing a period, late generations, adjustments with an audit trail."""
