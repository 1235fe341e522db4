"""Pipeline stages: each module holds pure transforms and one thin run(ctx)."""
