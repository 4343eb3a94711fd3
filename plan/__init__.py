"""The offline plan: the program under the Pulumi SDK's mocks, recorded and written to build/."""
