"""Thin views, a module per topic: validate with a serializer, call one domain function, serialize the answer."""
