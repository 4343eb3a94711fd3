"""The stack's inputs from the Pulumi runtime: ``config`` reads ``virtfleet:*`` into the model, ``secrets``
gives every secret as a secret Output (set with ``pulumi config set --secret``, or generated)."""
