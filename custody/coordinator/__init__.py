"""The coordinator: drives signer nodes through protocol rounds, holds no secrets."""
