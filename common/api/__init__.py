"""The API's plumbing, the same for every app: errors, authentication, permissions, parsing, pagination, schema."""
