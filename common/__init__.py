"""What the apps share and neither owns: the API's plumbing (common/api/), admin helpers, domain error kinds."""
