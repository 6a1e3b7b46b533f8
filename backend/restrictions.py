"""Restricted APIs (Triton's --grpc-restricted-protocol / --http-restricted-api
`<api list>:<key>=<value>`): the listed API groups need that request header, on either protocol."""

# Triton's API group names.
API_GROUPS = ("health", "metadata", "model-config", "inference", "statistics", "model-repository",
              "shared-memory", "trace", "logging")


class Restrictions:
    def __init__(self, specs=(), flag="--grpc-restricted-protocol"):
        self.required = {}
        for spec in specs:
            groups, _, header = spec.partition(":")
            key, _, value = header.partition("=")
            if not groups or not key:
                raise ValueError(f"invalid {flag} '{spec}': expected <api list>:<key>=<value>")
            for g in groups.split(","):
                if g.strip() not in API_GROUPS:
                    raise ValueError(f"invalid {flag} '{spec}': unknown API '{g}' "
                                     f"(one of {', '.join(API_GROUPS)})")
                self.required[g.strip()] = (key.lower(), value)

    def missing(self, group: str, headers) -> str | None:
        """The header key a call of `group` lacks (headers: a mapping whose get() finds the lower-case
        name: gRPC metadata's dict, aiohttp's case-insensitive headers), or None."""
        need = self.required.get(group)
        if need is None or headers.get(need[0]) == need[1]:
            return None
        return need[0]
